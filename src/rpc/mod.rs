//! The internal RPC: one transport for everything between processes (Raft messages, metadata
//! calls, shard streams). HTTP/2 over TCP (multiplexed, streaming, flow-controlled), every request
//! authenticated with an HMAC keyed by the cluster secret and tagged with the protocol version.
//! Must not know about S3, Raft or shards: callers bring their own paths and bodies.

mod auth;
mod client;
mod error;
mod server;

pub use auth::{unix_now_ms, ClusterSecret};
pub use client::{read_body, RpcBody, RpcClient, CONNECT_TIMEOUT};
pub use error::RpcError;
pub use server::{full_body, serve, status_response, RpcHandler, RpcListener, RpcResponse};

/// Version of the internal protocol; a peer speaking another version is refused.
pub const PROTOCOL_VERSION: u32 = 1;
/// Header carrying [`PROTOCOL_VERSION`].
pub const HEADER_PROTOCOL: &str = "x-baobab-proto";
/// Header carrying the request's unix time in seconds (part of the authenticated message).
pub const HEADER_TIMESTAMP: &str = "x-baobab-ts";
/// Header carrying the HMAC-SHA256 of the request line and timestamp, hex.
pub const HEADER_AUTH: &str = "x-baobab-auth";
/// Largest clock difference between two peers that still authenticates.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;
/// Largest non-streaming message body (metadata and Raft messages).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Encodes a message for the wire (MessagePack, fields by name so they can be added later).
pub fn encode<T: serde::Serialize>(msg: &T) -> Result<bytes::Bytes, RpcError> {
    rmp_serde::to_vec_named(msg)
        .map(bytes::Bytes::from)
        .map_err(|e| RpcError::Codec(e.to_string()))
}

/// Decodes a message from the wire.
pub fn decode<T: serde::de::DeserializeOwned>(buf: &[u8]) -> Result<T, RpcError> {
    rmp_serde::from_slice(buf).map_err(|e| RpcError::Codec(e.to_string()))
}
