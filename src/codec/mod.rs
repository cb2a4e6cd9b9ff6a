//! Pure byte codecs: Reed-Solomon erasure coding of blocks and the shard file format.
//! No IO here.

pub mod erasure;
pub mod shard_format;

pub use erasure::{Erasure, ErasureError};
