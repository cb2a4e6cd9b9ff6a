//! Baobab core library: the layers below the S3 surface.
//!
//! Layers point one way: `types` → `codec` → `placement` → `rpc` → `meta` → `shard` → `coord` →
//! `object`.
//! Binaries (gateway, storage node, cli) only wire these together.

pub mod codec;
pub mod coord;
pub mod fsutil;
pub mod gc;
pub mod meta;
pub mod metrics;
pub mod object;
pub mod placement;
pub mod repair;
pub mod retire;
pub mod rpc;
pub mod shard;
pub mod types;
pub mod worker;
