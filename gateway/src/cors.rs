//! Bucket CORS: which rule allows a cross-origin request (pure matching, S3's rules: an origin
//! or header pattern may hold one `*`; methods match exactly), the preflight answer to
//! `OPTIONS`, and the headers added to actual responses. Preflights are answered by the
//! listener before s3s (they carry no signature).

use baobab::meta::CorsRule;

use crate::access::Access;

/// Does `pattern` (with at most one `*`) match `value`? Case-insensitive for headers only.
fn wildcard_match(pattern: &str, value: &str, case_insensitive: bool) -> bool {
    let (p, v) = if case_insensitive {
        (pattern.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (pattern.to_string(), value.to_string())
    };
    match p.split_once('*') {
        None => p == v,
        Some((pre, post)) => {
            v.len() >= pre.len() + post.len() && v.starts_with(pre) && v.ends_with(post)
        }
    }
}

/// The first rule that allows `origin` to send `method` with `headers`.
pub fn find_rule<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &str,
    headers: &[String],
) -> Option<&'a CorsRule> {
    rules.iter().find(|r| {
        r.allowed_origins
            .iter()
            .any(|o| wildcard_match(o, origin, false))
            && r.allowed_methods.iter().any(|m| m == method)
            && headers
                .iter()
                .all(|h| r.allowed_headers.iter().any(|p| wildcard_match(p, h, true)))
    })
}

/// `Access-Control-Request-Headers` as a list.
pub fn requested_headers(value: Option<&str>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The headers a matching rule adds (to a preflight answer when `preflight` holds the
/// requested headers, to an actual response otherwise).
pub fn response_headers(
    rule: &CorsRule,
    origin: &str,
    preflight: Option<&[String]>,
) -> Vec<(&'static str, String)> {
    let any_origin = rule.allowed_origins.iter().any(|o| o == "*");
    let mut h = vec![
        (
            "access-control-allow-origin",
            if any_origin {
                "*".to_string()
            } else {
                origin.to_string()
            },
        ),
        (
            "vary",
            "Origin, Access-Control-Request-Headers, Access-Control-Request-Method".to_string(),
        ),
    ];
    if !any_origin {
        h.push(("access-control-allow-credentials", "true".to_string()));
    }
    if let Some(requested) = preflight {
        h.push((
            "access-control-allow-methods",
            rule.allowed_methods.join(", "),
        ));
        if !requested.is_empty() {
            h.push(("access-control-allow-headers", requested.join(", ")));
        }
        if let Some(age) = rule.max_age_secs {
            h.push(("access-control-max-age", age.to_string()));
        }
    }
    if !rule.expose_headers.is_empty() {
        h.push((
            "access-control-expose-headers",
            rule.expose_headers.join(", "),
        ));
    }
    h
}

/// Answers a preflight `OPTIONS`: 200 with the rule's headers, or 403 when no rule allows it.
pub async fn preflight(
    access: &Access,
    bucket: Option<String>,
    headers: &http::HeaderMap,
) -> http::Response<s3s::Body> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let origin = get("origin");
    let method = get("access-control-request-method");
    let requested = requested_headers(get("access-control-request-headers"));
    let rules = match &bucket {
        Some(b) => access
            .bucket(b)
            .await
            .map(|b| b.cors.clone())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let rule = match (origin, method) {
        (Some(o), Some(m)) => find_rule(&rules, o, m, &requested).map(|r| (o, r)),
        _ => None,
    };
    let mut resp = http::Response::new(s3s::Body::empty());
    match rule {
        Some((origin, rule)) => {
            for (name, value) in response_headers(rule, origin, Some(&requested)) {
                if let Ok(v) = http::HeaderValue::from_str(&value) {
                    resp.headers_mut().insert(name, v);
                }
            }
        }
        None => {
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessForbidden</Code><Message>CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.</Message></Error>";
            *resp.status_mut() = http::StatusCode::FORBIDDEN;
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/xml"),
            );
            *resp.body_mut() = s3s::Body::from(body.to_string());
        }
    }
    resp
}

/// Adds the CORS headers of the rule that allows (`origin`, `method`) on `bucket`, if any.
pub async fn decorate(
    access: &Access,
    bucket: &str,
    origin: &str,
    method: &str,
    resp: &mut http::Response<s3s::Body>,
) {
    let Ok(b) = access.bucket(bucket).await else {
        return;
    };
    if let Some(rule) = find_rule(&b.cors, origin, method, &[]) {
        for (name, value) in response_headers(rule, origin, None) {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CorsRule {
        CorsRule {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_methods: methods.iter().map(|s| s.to_string()).collect(),
            allowed_headers: headers.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn matching() {
        let rules = vec![
            rule(
                &["https://app.example.com"],
                &["GET", "PUT"],
                &["content-type", "x-amz-*"],
            ),
            rule(&["http://*.example.org"], &["GET"], &[]),
            rule(&["*"], &["HEAD"], &["*"]),
        ];
        let hs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(find_rule(
            &rules,
            "https://app.example.com",
            "PUT",
            &hs(&["Content-Type", "x-amz-date"])
        )
        .is_some());
        assert!(find_rule(
            &rules,
            "https://app.example.com",
            "PUT",
            &hs(&["authorization"])
        )
        .is_none());
        assert!(find_rule(&rules, "https://app.example.com", "DELETE", &[]).is_none());
        assert!(find_rule(&rules, "http://a.example.org", "GET", &[]).is_some());
        assert!(find_rule(&rules, "http://example.org", "GET", &[]).is_none());
        assert!(find_rule(&rules, "https://evil.test", "GET", &[]).is_none());
        let any =
            find_rule(&rules, "https://evil.test", "HEAD", &hs(&["whatever"])).expect("rule 3");
        let h = response_headers(any, "https://evil.test", Some(&[]));
        assert!(h.contains(&("access-control-allow-origin", "*".to_string())));
        assert_eq!(
            requested_headers(Some("Content-Type, X-Amz-Date")),
            hs(&["content-type", "x-amz-date"])
        );
    }
}
