//! Signature rules AWS enforces that s3s does not, checked by the listener before s3s sees the
//! request:
//! - a SigV4 presigned URL lives at most 7 days (`X-Amz-Expires` ≤ 604800), else
//!   `400 AuthorizationQueryParametersError`, as AWS answers;
//! - a SigV2 header-signed request carries a `Date` (or `x-amz-date`) within 15 minutes of the
//!   gateway's clock, else `403 RequestTimeTooSkewed` (a captured request cannot be replayed
//!   later; SigV4 requests get the same window from s3s).

use std::time::{Duration, SystemTime};

use s3s::{S3Error, S3ErrorCode};

/// The longest a SigV4 presigned URL may be valid (AWS: one week).
pub const MAX_PRESIGNED_EXPIRES_SECS: u64 = 7 * 24 * 60 * 60;
/// How far a SigV2 request's date may be from the gateway's clock (AWS: 15 minutes).
pub const MAX_SIGV2_SKEW: Duration = Duration::from_secs(15 * 60);

/// The error a request breaking one of the rules gets; None when it keeps them (or does not
/// use the signature kinds they are about).
pub fn check(parts: &http::request::Parts, now: SystemTime) -> Option<S3Error> {
    if let Some(e) = check_presigned_v4(parts.uri.query()) {
        return Some(e);
    }
    let auth = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?;
    if !auth.starts_with("AWS ") {
        return None;
    }
    let date = parts
        .headers
        .get("x-amz-date")
        .or_else(|| parts.headers.get(http::header::DATE))
        .and_then(|v| v.to_str().ok());
    let Some(at) = date.and_then(parse_http_date) else {
        return Some(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "AWS authentication requires a valid Date or x-amz-date header",
        ));
    };
    let skew = now
        .duration_since(at)
        .or_else(|_| at.duration_since(now))
        .unwrap_or_default();
    (skew > MAX_SIGV2_SKEW).then(|| {
        S3Error::with_message(
            S3ErrorCode::RequestTimeTooSkewed,
            "The difference between the request time and the current time is too large.",
        )
    })
}

fn check_presigned_v4(query: Option<&str>) -> Option<S3Error> {
    let query = query?;
    let mut v4 = false;
    let mut expires = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("X-Amz-Algorithm", "AWS4-HMAC-SHA256")) => v4 = true,
            Some(("X-Amz-Expires", v)) => expires = Some(v),
            _ => {}
        }
    }
    let expires = expires.filter(|_| v4)?;
    match expires.parse::<u64>() {
        Ok(secs) if secs <= MAX_PRESIGNED_EXPIRES_SECS => None,
        Ok(_) => Some(S3Error::with_message(
            S3ErrorCode::Custom("AuthorizationQueryParametersError".into()),
            "X-Amz-Expires must be less than a week (in seconds) that is; 604800",
        )),
        Err(_) => Some(S3Error::with_message(
            S3ErrorCode::Custom("AuthorizationQueryParametersError".into()),
            "X-Amz-Expires should be a number",
        )),
    }
    .map(|mut e| {
        e.set_status_code(http::StatusCode::BAD_REQUEST);
        e
    })
}

/// An RFC 1123 / RFC 2822 date (`Sun, 29 Nov 2026 13:04:10 GMT`).
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc2822).ok()?;
    let secs = u64::try_from(t.unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    fn code(e: Option<S3Error>) -> Option<String> {
        e.map(|e| e.code().as_str().to_string())
    }

    #[test]
    fn presigned_v4_urls_live_at_most_a_week() {
        let now = SystemTime::now();
        let url = |expires: &str| {
            format!(
                "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires={expires}&X-Amz-Signature=ab"
            )
        };
        assert_eq!(code(check(&parts(&url("604800"), &[]), now)), None);
        assert_eq!(
            code(check(&parts(&url("604801"), &[]), now)).as_deref(),
            Some("AuthorizationQueryParametersError")
        );
        assert_eq!(
            code(check(&parts(&url("-5"), &[]), now)).as_deref(),
            Some("AuthorizationQueryParametersError")
        );
        // Not a SigV4 presigned URL: not ours to judge.
        assert_eq!(
            code(check(&parts("/b/k?X-Amz-Expires=99999999", &[]), now)),
            None
        );
    }

    #[test]
    fn sigv2_dates_are_held_to_15_minutes() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_957_450); // Sun, 29 Nov 2026 13:04:10 GMT
        let v2 = |date: &str| parts("/b/k", &[("authorization", "AWS AK:c2ln"), ("date", date)]);
        let date = "Sun, 29 Nov 2026 13:04:10 GMT";
        assert_eq!(code(check(&v2(date), at)), None);
        assert_eq!(
            code(check(&v2(date), at + Duration::from_secs(14 * 60))),
            None
        );
        assert_eq!(
            code(check(&v2(date), at + Duration::from_secs(16 * 60))).as_deref(),
            Some("RequestTimeTooSkewed")
        );
        assert_eq!(
            code(check(&v2(date), at - Duration::from_secs(16 * 60))).as_deref(),
            Some("RequestTimeTooSkewed")
        );
        assert_eq!(
            code(check(&v2("yesterday"), at)).as_deref(),
            Some("AccessDenied")
        );
        // x-amz-date wins over Date, as S3 reads it.
        let both = parts(
            "/b/k",
            &[
                ("authorization", "AWS AK:c2ln"),
                ("date", "Sun, 01 Jan 2017 00:00:00 GMT"),
                ("x-amz-date", date),
            ],
        );
        assert_eq!(code(check(&both, at)), None);
        // SigV4 and anonymous requests are s3s's.
        let v4 = parts(
            "/b/k",
            &[("authorization", "AWS4-HMAC-SHA256 Credential=…")],
        );
        assert_eq!(code(check(&v4, at)), None);
        assert_eq!(code(check(&parts("/b/k", &[]), at)), None);
    }
}
