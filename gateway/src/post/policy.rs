//! The pure checks of a browser-form POST: who signed it (SigV4 or SigV2 over the base64
//! policy, compared in constant time) and whether the form keeps its policy (expiry, every
//! condition, every field covered by one). No IO: `post.rs` looks up secrets and rights.

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use s3s::post_policy::{PostPolicy, PostPolicyCondition};
use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};
use sha1::Sha1;
use sha2::Sha256;

/// The form's fields before the file: names lower-cased (AWS reads them case-insensitively),
/// values with `${filename}` already replaced.
pub type Fields = BTreeMap<String, String>;

/// Who signed a form.
#[derive(Debug, PartialEq, Eq)]
pub enum Signer<'f> {
    /// No signature fields: a request of nobody.
    Anonymous,
    /// `x-amz-signature`: hex HMAC-SHA256 of the base64 policy under the SigV4 signing key of
    /// the credential's date and region.
    V4 {
        access_key: &'f str,
        /// `YYYYMMDD`, from the credential scope.
        date: &'f str,
        region: &'f str,
        signature_hex: &'f str,
    },
    /// `signature`: base64 HMAC-SHA1 of the base64 policy under the secret.
    V2 {
        access_key: &'f str,
        signature_b64: &'f str,
    },
}

impl<'f> Signer<'f> {
    pub fn access_key(&self) -> Option<&'f str> {
        match self {
            Signer::Anonymous => None,
            Signer::V4 { access_key, .. } | Signer::V2 { access_key, .. } => Some(access_key),
        }
    }
}

/// A required field that is missing, as AWS words it.
pub fn missing_field(name: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InvalidArgument,
        format!(
            "Bucket POST must contain a field named '{name}'. If it is specified, please check the order of the fields."
        ),
    )
}

/// The signer the fields name. A signed form must carry its policy.
pub fn signer(fields: &Fields) -> S3Result<Signer<'_>> {
    let get = |name: &str| fields.get(name).map(String::as_str);
    if let Some(signature_hex) = get("x-amz-signature") {
        let algorithm = get("x-amz-algorithm").ok_or_else(|| missing_field("x-amz-algorithm"))?;
        if algorithm != "AWS4-HMAC-SHA256" {
            return Err(s3_error!(
                InvalidArgument,
                "x-amz-algorithm only supports AWS4-HMAC-SHA256"
            ));
        }
        let credential =
            get("x-amz-credential").ok_or_else(|| missing_field("x-amz-credential"))?;
        let amz_date = get("x-amz-date").ok_or_else(|| missing_field("x-amz-date"))?;
        get("policy").ok_or_else(|| missing_field("policy"))?;
        let bad_credential = || {
            s3_error!(
                InvalidArgument,
                "Error parsing the X-Amz-Credential parameter; the credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\"."
            )
        };
        let [access_key, date, region, service, terminator] = credential
            .split('/')
            .collect::<Vec<_>>()
            .try_into()
            .map_err(|_| bad_credential())?;
        let is_date = |d: &str| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit());
        if access_key.is_empty()
            || !is_date(date)
            || region.is_empty()
            || service != "s3"
            || terminator != "aws4_request"
        {
            return Err(bad_credential());
        }
        let well_formed_date = amz_date.len() == 16
            && amz_date.is_char_boundary(8)
            && is_date(&amz_date[..8])
            && amz_date[8..].starts_with('T')
            && amz_date.ends_with('Z');
        if !well_formed_date {
            return Err(s3_error!(
                InvalidArgument,
                "x-amz-date must be in the ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z'"
            ));
        }
        if &amz_date[..8] != date {
            return Err(s3_error!(
                SignatureDoesNotMatch,
                "The date of the credential scope does not match x-amz-date"
            ));
        }
        return Ok(Signer::V4 {
            access_key,
            date,
            region,
            signature_hex,
        });
    }
    if let Some(signature_b64) = get("signature") {
        let access_key = get("awsaccesskeyid").ok_or_else(|| missing_field("AWSAccessKeyId"))?;
        get("policy").ok_or_else(|| missing_field("policy"))?;
        return Ok(Signer::V2 {
            access_key,
            signature_b64,
        });
    }
    Ok(Signer::Anonymous)
}

fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// SigV4's signing key: HMAC chain over the date, region, service and `aws4_request`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [date, region, service, "aws4_request"] {
        key = hmac_sha256(&key)
            .chain_update(part.as_bytes())
            .finalize()
            .into_bytes()
            .to_vec();
    }
    key
}

/// `SignatureDoesNotMatch` unless the signer's signature over `policy_b64` is the one
/// `secret` makes. The comparison takes the same time wherever the bytes differ.
pub fn verify(signer: &Signer<'_>, secret: &str, policy_b64: &str) -> S3Result<()> {
    let matches = match signer {
        Signer::Anonymous => false,
        Signer::V4 {
            date,
            region,
            signature_hex,
            ..
        } => hex::decode(signature_hex).is_ok_and(|claimed| {
            hmac_sha256(&signing_key(secret, date, region, "s3"))
                .chain_update(policy_b64.as_bytes())
                .verify_slice(&claimed)
                .is_ok()
        }),
        Signer::V2 { signature_b64, .. } => base64::engine::general_purpose::STANDARD
            .decode(signature_b64.trim())
            .is_ok_and(|claimed| {
                <Hmac<Sha1> as KeyInit>::new_from_slice(secret.as_bytes())
                    .expect("HMAC accepts keys of any length")
                    .chain_update(policy_b64.as_bytes())
                    .verify_slice(&claimed)
                    .is_ok()
            }),
    };
    if matches {
        Ok(())
    } else {
        Err(s3_error!(
            SignatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided. Check your key and signing method."
        ))
    }
}

/// The file sizes a policy allows (its content-length-range; any size without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRange {
    pub min: u64,
    pub max: u64,
}

/// Fields a policy need not name (AWS: the signature, the file, the policy, `x-ignore-*`;
/// SigV2's signature and key id).
fn exempt(name: &str) -> bool {
    matches!(
        name,
        "x-amz-signature" | "signature" | "awsaccesskeyid" | "file" | "policy"
    ) || name.starts_with("x-ignore-")
}

fn denied(why: String) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::AccessDenied,
        format!("Invalid according to Policy: {why}"),
    )
}

/// Checks the form against its policy at `now`: not expired (`AccessDenied`), every
/// condition holds (`AccessDenied`), every field but the exempt ones named by an `eq` or
/// `starts-with` condition (`AccessDenied`). Returns the file sizes allowed, checked while the
/// file streams. `bucket` is the bucket the request addresses: the value of `$bucket`.
pub fn check(
    policy: &PostPolicy,
    fields: &Fields,
    bucket: &str,
    now: time::OffsetDateTime,
) -> S3Result<SizeRange> {
    let expiration: time::OffsetDateTime = policy.expiration.clone().into();
    if now >= expiration {
        return Err(denied("Policy expired.".into()));
    }
    let value_of = |field: &str| match field {
        "bucket" => bucket,
        _ => fields.get(field).map_or("", String::as_str),
    };
    let mut range = SizeRange {
        min: 0,
        max: u64::MAX,
    };
    for condition in &policy.conditions {
        match condition {
            PostPolicyCondition::Eq { field, value } => {
                if value_of(field) != value {
                    return Err(denied(format!(
                        "Policy Condition failed: [\"eq\", \"${field}\", \"{value}\"]"
                    )));
                }
            }
            PostPolicyCondition::StartsWith { field, prefix } => {
                let actual = value_of(field);
                // Content-Type may list several types; each must match (AWS).
                let holds = if field == "content-type" {
                    actual
                        .split(',')
                        .all(|t| t.trim().starts_with(prefix.as_str()))
                } else {
                    actual.starts_with(prefix.as_str())
                };
                if !holds {
                    return Err(denied(format!(
                        "Policy Condition failed: [\"starts-with\", \"${field}\", \"{prefix}\"]"
                    )));
                }
            }
            PostPolicyCondition::ContentLengthRange { min, max } => {
                range.min = range.min.max(*min);
                range.max = range.max.min(*max);
            }
        }
    }
    let named = |name: &str| {
        policy.conditions.iter().any(|c| match c {
            PostPolicyCondition::Eq { field, .. }
            | PostPolicyCondition::StartsWith { field, .. } => field == name,
            PostPolicyCondition::ContentLengthRange { .. } => false,
        })
    };
    if let Some(extra) = fields.keys().find(|n| !exempt(n) && !named(n)) {
        return Err(denied(format!("Extra input fields: {extra}")));
    }
    Ok(range)
}

/// What `${filename}` stands for: the client's file name after its last `/` or `\` (browsers
/// may send a path), empty without one.
pub fn base_file_name(name: Option<&str>) -> &str {
    let name = name.unwrap_or("");
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn policy(conditions: &str) -> PostPolicy {
        PostPolicy::from_json(&format!(
            "{{\"expiration\": \"2030-01-01T00:00:00Z\", \"conditions\": {conditions}}}"
        ))
        .expect("valid policy")
    }

    fn now() -> time::OffsetDateTime {
        time::macros::datetime!(2026-11-29 00:00 UTC)
    }

    #[test]
    fn signing_key_matches_the_aws_example() {
        // AWS's "deriving a signing key" example.
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex::encode(key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn signatures() {
        // Expected values from Python's hmac module.
        let policy_b64 = "eyJwb2xpY3kiOiAxfQ==";
        let v4 = fields(&[
            ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
            ("x-amz-credential", "AK/20261129/us-east-1/s3/aws4_request"),
            ("x-amz-date", "20261129T000000Z"),
            (
                "x-amz-signature",
                "cc5c477ad7521f0800189b3276bde38a2348e293cba3809cf1ee3fe2ae88fdc3",
            ),
            ("policy", policy_b64),
        ]);
        let s = signer(&v4).expect("v4 fields");
        assert_eq!(s.access_key(), Some("AK"));
        assert!(verify(&s, "secret", policy_b64).is_ok());
        assert!(verify(&s, "other", policy_b64).is_err());
        assert!(verify(&s, "secret", "eyJwb2xpY3kiOiAyfQ==").is_err());

        let v2 = fields(&[
            ("awsaccesskeyid", "AK"),
            ("signature", "g1iSAkXnx2iFsy1Uj0CnYyqdrak="),
            ("policy", policy_b64),
        ]);
        let s = signer(&v2).expect("v2 fields");
        assert!(verify(&s, "secret", policy_b64).is_ok());
        assert!(verify(&s, "other", policy_b64).is_err());
        let bad = fields(&[
            ("awsaccesskeyid", "AK"),
            ("signature", "not base64!"),
            ("policy", policy_b64),
        ]);
        assert!(verify(&signer(&bad).expect("v2 fields"), "secret", policy_b64).is_err());

        assert_eq!(
            signer(&fields(&[("key", "k")])).ok(),
            Some(Signer::Anonymous)
        );
        assert!(verify(&Signer::Anonymous, "secret", policy_b64).is_err());
    }

    #[test]
    fn malformed_signers() {
        let base = [
            ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
            ("x-amz-credential", "AK/20261129/us-east-1/s3/aws4_request"),
            ("x-amz-date", "20261129T000000Z"),
            ("x-amz-signature", "00"),
            ("policy", "e30="),
        ];
        let with = |name: &str, value: Option<&str>| {
            let mut f = fields(&base);
            match value {
                Some(v) => f.insert(name.to_string(), v.to_string()),
                None => f.remove(name),
            };
            signer(&f)
                .map(|_| ())
                .map_err(|e| e.code().as_str().to_string())
        };
        let invalid = Err("InvalidArgument".to_string());
        assert_eq!(with("policy", None), invalid);
        assert_eq!(with("x-amz-algorithm", Some("AWS4-HMAC-SHA1")), invalid);
        assert_eq!(
            with("x-amz-credential", Some("AK/20261129/us-east-1/s3")),
            invalid
        );
        assert_eq!(
            with(
                "x-amz-credential",
                Some("AK/20261129/us-east-1/sts/aws4_request")
            ),
            invalid
        );
        assert_eq!(with("x-amz-date", Some("2026-11-29")), invalid);
        assert_eq!(
            with("x-amz-date", Some("20261130T000000Z")),
            Err("SignatureDoesNotMatch".to_string())
        );
        let v2 = fields(&[("signature", "x"), ("policy", "e30=")]);
        assert!(signer(&v2).is_err());
    }

    #[test]
    fn conditions() {
        let p = policy(
            r#"[{"bucket": "photos"}, ["starts-with", "$key", "user/"], ["eq", "$success_action_status", "201"],
               ["starts-with", "$Content-Type", "image/"], ["starts-with", "$x-amz-meta-tag", ""],
               ["content-length-range", 10, 100]]"#,
        );
        let ok = fields(&[
            ("key", "user/a.jpg"),
            ("success_action_status", "201"),
            ("content-type", "image/jpeg, image/png"),
            ("x-ignore-this", "anything"),
            ("policy", "…"),
        ]);
        assert_eq!(
            check(&p, &ok, "photos", now()).ok(),
            Some(SizeRange { min: 10, max: 100 })
        );
        let code = |f: &Fields, bucket: &str| {
            check(&p, f, bucket, now())
                .map(|_| ())
                .map_err(|e| e.code().as_str().to_string())
        };
        let denied = Err("AccessDenied".to_string());
        assert_eq!(code(&ok, "videos"), denied);
        let mut f = ok.clone();
        f.insert("key".into(), "admin/a.jpg".into());
        assert_eq!(code(&f, "photos"), denied);
        let mut f = ok.clone();
        f.insert("content-type".into(), "image/jpeg, text/html".into());
        assert_eq!(code(&f, "photos"), denied);
        let mut f = ok.clone();
        f.remove("success_action_status");
        assert_eq!(code(&f, "photos"), denied);
        // A field no condition names.
        let mut f = ok.clone();
        f.insert("x-amz-meta-other".into(), "1".into());
        assert_eq!(code(&f, "photos"), denied);
        // starts-with "" admits the field, present or not.
        let mut f = ok.clone();
        f.insert("x-amz-meta-tag".into(), "anything".into());
        assert_eq!(code(&f, "photos"), Ok(()));
        // Expired.
        let late = time::macros::datetime!(2030-01-01 00:00 UTC);
        assert!(check(&p, &ok, "photos", late).is_err());
        // No content-length-range: any size.
        let open = policy(r#"[["starts-with", "$key", ""]]"#);
        let f = fields(&[("key", "k")]);
        assert_eq!(
            check(&open, &f, "b", now()).ok(),
            Some(SizeRange {
                min: 0,
                max: u64::MAX
            })
        );
    }

    #[test]
    fn file_names() {
        assert_eq!(base_file_name(Some("a.txt")), "a.txt");
        assert_eq!(
            base_file_name(Some("C:\\Program Files\\dir\\file.txt")),
            "file.txt"
        );
        assert_eq!(base_file_name(Some("/home/me/x.bin")), "x.bin");
        assert_eq!(base_file_name(None), "");
    }
}
