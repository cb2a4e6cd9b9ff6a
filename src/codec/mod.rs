//! Pure byte codecs: Reed-Solomon erasure coding of blocks, the shard file format, and S3's
//! additional checksums.
//! No IO here.

pub mod checksum;
pub mod erasure;
pub mod seal;
pub mod shard_format;

pub use erasure::{Erasure, ErasureError};
