//! Metadata: buckets, access keys and object records in a state machine replicated by openraft,
//! with the Raft log and the state machine in one RocksDB per node.
//!
//! One Raft group for now, on all storage nodes. The seam for the partitioned ring: everything
//! above this module speaks [`model::Command`] / [`model::Query`] through [`MetaClient`], which
//! will later route by (bucket, index shard) to a partition's group.

pub mod model;

pub use model::*;
