//! Metadata: buckets, access keys and object records in a state machine replicated by openraft,
//! with the Raft log and the state machine in one RocksDB per node.
//!
//! One Raft group for now, on all storage nodes. The seam for the partitioned ring: everything
//! above this module sends typed requests ([`request`]: each with its reply and its [`Route`],
//! the control group or a bucket's partition) through [`MetaClient`], which will route them to
//! the partition's group; object records are keyed by bucket id, and no command reads records
//! of another partition (deleting a bucket seals it in its partition first).
//!
//! Map: [`model`] (records, the command and query envelopes) and [`request`] (the typed
//! requests) → [`state`] (pure apply and listing, with
//! [`dedup`] for exactly-once retries and [`garbage`] for the retire queue) →
//! [`store`] (RocksDB, openraft storage traits) and [`raft`] (types, config, network over our
//! RPC) → [`node`] (a group member serving RPCs) / [`client`] (leader-following client).

pub mod buckets;
mod client;
pub mod dedup;
mod error;
pub mod garbage;
mod join;
pub mod model;
mod node;
pub mod raft;
mod read_barrier;
pub mod references;
pub mod repair;
pub mod request;
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
pub use request::{partition_of, ReadRequest, Refused, Route, WriteRequest};
