//! Metadata: buckets, access keys and object records in a state machine replicated by openraft,
//! with the Raft log and the state machine in one RocksDB per node.
//!
//! One Raft group for now, on all storage nodes. The seam for the partitioned ring: everything
//! above this module speaks [`model::Command`] / [`model::Query`] through [`MetaClient`], which
//! will later route by (bucket, index shard) to a partition's group.
//!
//! Map: [`model`] (records, commands, queries) → [`state`] (pure apply and listing, with
//! [`dedup`] for exactly-once retries and [`garbage`] for the retire queue) →
//! [`store`] (RocksDB, openraft storage traits) and [`raft`] (types, config, network over our
//! RPC) → [`node`] (a group member serving RPCs) / [`client`] (leader-following client).

mod client;
pub mod dedup;
mod error;
pub mod garbage;
mod join;
pub mod model;
mod node;
pub mod raft;
pub mod references;
pub mod repair;
pub mod snapshot;
pub mod state;
mod store;
mod uploads;

pub use client::MetaClient;
pub use error::{MetaError, MetaRpcError};
// The rejoin messages, named for the fuzz targets (`fuzz/`), which decode every RPC message.
pub use join::{ProbeReply, RejoinReply, RejoinRequest, RejoinStep};
pub use model::*;
pub use node::{MetaConfig, MetaNode, ReadReply, WriteReply, PATH_META_READ, PATH_META_WRITE};
