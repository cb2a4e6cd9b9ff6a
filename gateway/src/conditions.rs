//! Conditional reads (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since) as S3
//! evaluates them (RFC 7232 precedence): a true If-Match makes If-Unmodified-Since irrelevant,
//! a false If-None-Match makes If-Modified-Since irrelevant. GET/HEAD answer 304 where
//! RFC 7232 says "not modified"; copy sources answer 412 for every failed condition.

use baobab::meta::ObjectRecord;
use s3s::dto::{ETagCondition, Timestamp};
use s3s::S3Result;

use crate::error::{not_modified, precondition_failed};
use crate::headers::{timestamp_ms, unquote};

#[derive(Default)]
pub struct ReadConditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

/// The four conditions of a GET/HEAD input (`if_match` …).
macro_rules! read_conditions {
    ($i:expr) => {
        crate::conditions::ReadConditions {
            if_match: $i.if_match.as_ref(),
            if_none_match: $i.if_none_match.as_ref(),
            if_modified_since: $i.if_modified_since.as_ref(),
            if_unmodified_since: $i.if_unmodified_since.as_ref(),
        }
    };
}
pub(crate) use read_conditions;

/// The four copy-source conditions of a CopyObject / UploadPartCopy input.
macro_rules! copy_source_conditions {
    ($i:expr) => {
        crate::conditions::ReadConditions {
            if_match: $i.copy_source_if_match.as_ref(),
            if_none_match: $i.copy_source_if_none_match.as_ref(),
            if_modified_since: $i.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: $i.copy_source_if_unmodified_since.as_ref(),
        }
    };
}
pub(crate) use copy_source_conditions;

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Proceed,
    NotModified,
    PreconditionFailed,
}

fn matches(c: &ETagCondition, etag: &str) -> bool {
    match c.as_etag() {
        None => true,
        Some(e) => unquote(e.value()) == etag,
    }
}

/// Last-Modified has one-second resolution in HTTP dates.
fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

impl ReadConditions<'_> {
    pub fn evaluate(&self, etag: &str, last_modified_ms: i64) -> Outcome {
        let modified = secs(last_modified_ms);
        match self.if_match {
            Some(c) if !matches(c, etag) => return Outcome::PreconditionFailed,
            Some(_) => {}
            None => {
                if let Some(t) = self.if_unmodified_since {
                    if modified > secs(timestamp_ms(t)) {
                        return Outcome::PreconditionFailed;
                    }
                }
            }
        }
        match self.if_none_match {
            Some(c) if matches(c, etag) => return Outcome::NotModified,
            Some(_) => {}
            None => {
                if let Some(t) = self.if_modified_since {
                    if modified <= secs(timestamp_ms(t)) {
                        return Outcome::NotModified;
                    }
                }
            }
        }
        Outcome::Proceed
    }

    /// For GET and HEAD: 304 (with ETag and Last-Modified) or 412.
    pub fn check_read(&self, record: &ObjectRecord) -> S3Result<()> {
        match self.evaluate(&record.etag, record.last_modified_ms) {
            Outcome::Proceed => Ok(()),
            Outcome::PreconditionFailed => Err(precondition_failed()),
            Outcome::NotModified => Err(not_modified(validators(record))),
        }
    }

    /// For copy sources: every failed condition is 412.
    pub fn check_copy_source(&self, record: &ObjectRecord) -> S3Result<()> {
        match self.evaluate(&record.etag, record.last_modified_ms) {
            Outcome::Proceed => Ok(()),
            _ => Err(precondition_failed()),
        }
    }
}

fn validators(record: &ObjectRecord) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", record.etag)) {
        h.insert(http::header::ETAG, v);
    }
    let t = crate::headers::timestamp(record.last_modified_ms);
    let mut buf = Vec::new();
    if t.format(s3s::dto::TimestampFormat::HttpDate, &mut buf)
        .is_ok()
    {
        if let Ok(v) = http::HeaderValue::from_bytes(&buf) {
            h.insert(http::header::LAST_MODIFIED, v);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::dto::ETag;

    fn ts(secs: i64) -> Timestamp {
        crate::headers::timestamp(secs * 1000)
    }

    #[test]
    fn rfc7232_precedence() {
        let etag = "abc";
        let lm = 1_000_000; // ms: second 1000
        let good = ETagCondition::ETag(ETag::Strong("abc".into()));
        let bad = ETagCondition::ETag(ETag::Strong("zzz".into()));
        let past = ts(10);
        let future = ts(5000);
        let eval = |c: ReadConditions| c.evaluate(etag, lm);
        assert_eq!(
            eval(ReadConditions {
                if_match: Some(&good),
                ..Default::default()
            }),
            Outcome::Proceed
        );
        assert_eq!(
            eval(ReadConditions {
                if_match: Some(&bad),
                ..Default::default()
            }),
            Outcome::PreconditionFailed
        );
        assert_eq!(
            eval(ReadConditions {
                if_none_match: Some(&good),
                ..Default::default()
            }),
            Outcome::NotModified
        );
        assert_eq!(
            eval(ReadConditions {
                if_modified_since: Some(&future),
                ..Default::default()
            }),
            Outcome::NotModified
        );
        assert_eq!(
            eval(ReadConditions {
                if_modified_since: Some(&past),
                ..Default::default()
            }),
            Outcome::Proceed
        );
        assert_eq!(
            eval(ReadConditions {
                if_unmodified_since: Some(&past),
                ..Default::default()
            }),
            Outcome::PreconditionFailed
        );
        // If-Match true wins over a false If-Unmodified-Since.
        assert_eq!(
            eval(ReadConditions {
                if_match: Some(&good),
                if_unmodified_since: Some(&past),
                ..Default::default()
            }),
            Outcome::Proceed
        );
        // If-None-Match false (no match) wins over a false If-Modified-Since.
        assert_eq!(
            eval(ReadConditions {
                if_none_match: Some(&bad),
                if_modified_since: Some(&future),
                ..Default::default()
            }),
            Outcome::Proceed
        );
        assert_eq!(
            eval(ReadConditions {
                if_none_match: Some(&ETagCondition::Any),
                ..Default::default()
            }),
            Outcome::NotModified
        );
    }
}
