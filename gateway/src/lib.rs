//! The S3 gateway: serves the S3 API (parsing, SigV4 and XML by s3s) over the core's metadata
//! client and object coordinator. Stateless: everything it knows can be rebuilt from the
//! cluster. Architecture invariant: the gateway never writes to a local disk.

mod auth;
mod checksum;
mod error;
mod host;
mod s3;
mod server;

pub use server::{serve_s3, GatewayConfig};
