//! The S3 gateway: serves the S3 API (parsing, SigV4 and XML by s3s) over the core's object
//! service. Stateless: everything it knows can be rebuilt from the cluster. Architecture
//! invariant: the gateway never writes to a local disk.
//!
//! Map: `server` (listener, request ids) → s3s → `access` (rights, before the operation) →
//! `s3` (dispatch) → `buckets` / `objects` / `multipart` / `listing` → `baobab::object`.
//! `error` maps every internal error to its S3 code. POST object (browser form uploads) skips
//! s3s: `server` → `post` (form stream, signature, policy) → `access` → `baobab::object`.

mod access;
mod auth;
mod buckets;
mod checksum;
mod conditions;
mod cors;
mod error;
// The parsers above as the fuzz targets (`fuzz/`) drive them; not an API.
#[doc(hidden)]
pub mod fuzzing;
mod headers;
mod host;
mod limits;
mod listing;
mod multipart;
mod objects;
mod post;
mod s3;
mod server;
mod sig_limits;
mod sig_v2;
mod tls;

pub use limits::ListenerLimits;
pub use server::{serve_s3, serve_s3_with, GatewayConfig};
pub use tls::{S3Tls, TlsError, TlsFiles};
