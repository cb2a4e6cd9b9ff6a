//! The S3 request id across processes: the gateway runs each request in a [`scope`] of its id;
//! every RPC sent from inside it (directly or from a task started with [`carry`]) carries the id
//! in [`HEADER_REQUEST_ID`], and the receiving node serves it inside a `rpc` tracing span with
//! that `request_id`, so a node's log lines of one S3 request can be found by the id the client
//! got in `x-amz-request-id`.

use std::future::Future;
use std::sync::Arc;

/// Header carrying the request id on the internal RPC.
pub const HEADER_REQUEST_ID: &str = "x-baobab-request-id";

/// Longest request id passed on (a gateway's are 16 hex digits; anything longer is cut).
const MAX_ID_LEN: usize = 64;

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// Runs `fut` as part of request `id`.
pub async fn scope<F: Future>(id: Arc<str>, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

/// The request id of the running task, if it serves one.
pub fn current() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

/// `fut` in the current request's scope (for a task spawned on a request's behalf: task-local
/// values do not follow `tokio::spawn`).
pub fn carry<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    let id = current();
    async move {
        match id {
            Some(id) => scope(id, fut).await,
            None => fut.await,
        }
    }
}

/// The request id a received RPC names: printable ASCII only, bounded; None otherwise.
pub fn received(headers: &http::HeaderMap) -> Option<String> {
    let v = headers.get(HEADER_REQUEST_ID)?.to_str().ok()?;
    let v: String = v
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(MAX_ID_LEN)
        .collect();
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_id_follows_scopes_and_carried_tasks_only() {
        assert!(current().is_none());
        let id: Arc<str> = "0123abcd".into();
        let seen = scope(id.clone(), async {
            let inner = tokio::spawn(carry(async { current() }));
            let bare = tokio::spawn(async { current() });
            (
                current(),
                inner.await.expect("join"),
                bare.await.expect("join"),
            )
        })
        .await;
        assert_eq!(seen.0.as_deref(), Some("0123abcd"));
        assert_eq!(seen.1.as_deref(), Some("0123abcd"));
        assert_eq!(seen.2, None, "a plain spawn does not inherit the id");
    }

    #[test]
    fn received_ids_are_cleaned_and_bounded() {
        let mut h = http::HeaderMap::new();
        assert_eq!(received(&h), None);
        h.insert(HEADER_REQUEST_ID, http::HeaderValue::from_static("ab cd\t"));
        assert_eq!(received(&h).as_deref(), Some("abcd"));
        let long = "x".repeat(500);
        h.insert(
            HEADER_REQUEST_ID,
            http::HeaderValue::from_str(&long).expect("value"),
        );
        assert_eq!(received(&h).map(|s| s.len()), Some(MAX_ID_LEN));
    }
}
