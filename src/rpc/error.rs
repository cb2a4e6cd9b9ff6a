//! Errors of the internal RPC.

use crate::types::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    #[error("connection to {node} failed: {reason}")]
    Connect { node: NodeId, reason: String },
    #[error("call to {node} {path} timed out after {timeout_ms} ms")]
    Timeout {
        node: NodeId,
        path: String,
        timeout_ms: u64,
    },
    #[error("{node} answered {path} with status {status}: {message}")]
    Status {
        node: NodeId,
        path: String,
        status: u16,
        message: String,
    },
    #[error("message codec: {0}")]
    Codec(String),
    #[error("body: {0}")]
    Body(String),
}

impl RpcError {
    /// Whether trying again (maybe on another node) can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RpcError::Connect { .. } | RpcError::Timeout { .. } | RpcError::Body(_) => true,
            RpcError::Status { status, .. } => *status >= 500,
            RpcError::UnknownNode(_) | RpcError::Codec(_) => false,
        }
    }
}
