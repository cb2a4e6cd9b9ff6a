//! The internal RPC: one transport for everything between processes (Raft messages, metadata
//! calls, shard streams). HTTP/2 (multiplexed, streaming, flow-controlled) over mutual TLS
//! (`tls.rs`: both ends hold a certificate of the cluster CA, `cert.rs`, and know each other's
//! identity), every request tagged with the protocol version. Must not know about S3, Raft or
//! shards beyond which paths only storage nodes may call: callers bring their own paths and
//! bodies.

pub mod cert;
mod client;
mod error;
mod secret;
mod server;
mod tls;
pub mod trace;

pub use client::{read_body, RpcBody, RpcClient, CONNECT_TIMEOUT};
pub use error::RpcError;
pub use secret::{unix_now_ms, ClusterSecret};
pub use server::{full_body, serve, status_response, Peer, RpcHandler, RpcListener, RpcResponse};
pub use tls::{identity_of, Identity, RpcTls, TlsError, HANDSHAKE_TIMEOUT, NAME_DOMAIN};

/// Version of the internal protocol; a peer speaking another version is refused. 3: typed
/// metadata requests, object requests naming buckets by id.
pub const PROTOCOL_VERSION: u32 = 3;
/// Header carrying [`PROTOCOL_VERSION`].
pub const HEADER_PROTOCOL: &str = "x-baobab-proto";
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

#[cfg(test)]
mod tls_tests;
