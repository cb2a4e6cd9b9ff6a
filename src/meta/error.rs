//! Errors of the metadata layer, for callers to branch on by meaning ([`MetaError::is_retryable`]).

/// A metadata operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// No leader answered within the client's deadline.
    #[error("metadata unavailable after {waited_ms} ms: {last_error}")]
    Unavailable { waited_ms: u64, last_error: String },
    /// The local RocksDB failed.
    #[error("metadata storage: {0}")]
    Storage(String),
    /// A stored value or message could not be encoded or decoded.
    #[error("metadata codec: {0}")]
    Codec(String),
    /// openraft refused or failed.
    #[error("raft: {0}")]
    Raft(String),
    /// A peer refused the request for a reason retrying cannot fix (e.g. a 4xx answer).
    #[error("metadata rpc: {0}")]
    Rpc(String),
    /// The group answered a request with a result that request cannot have (a bug, or a
    /// member of another version).
    #[error("metadata request {request} got an answer it cannot have: {reply}")]
    UnexpectedReply {
        request: &'static str,
        reply: String,
    },
    /// The database was written in a format this build does not read.
    #[error("metadata format: {0}")]
    Format(String),
}

impl MetaError {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            MetaError::Unavailable { .. } | MetaError::Raft(_) => true,
            MetaError::Storage(_)
            | MetaError::Codec(_)
            | MetaError::Rpc(_)
            | MetaError::UnexpectedReply { .. }
            | MetaError::Format(_) => false,
        }
    }
}

/// A failure of [`super::MetaNode::handle_rpc`], with the HTTP status to answer it with.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct MetaRpcError {
    pub status: u16,
    pub message: String,
}

impl MetaRpcError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        MetaRpcError {
            status: 400,
            message: message.into(),
        }
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        MetaRpcError {
            status: 403,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        MetaRpcError {
            status: 404,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        MetaRpcError {
            status: 500,
            message: message.into(),
        }
    }
}
