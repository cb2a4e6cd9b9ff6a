//! The `baobab` binary: `server` (roles from a config file), `dev` (a whole local cluster in one
//! process, zero configuration), admin commands (`key …`, `bucket …`, `status`), and `cert …`
//! (the cluster CA and the certificates of the internal RPC).

mod admin;
mod cert;
mod dev;
mod repair;
mod run;

// The config parser lives in the library target so the fuzz targets (`fuzz/`) can reach it.
use baobab_cli::config;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// `baobab dev`'s default shard reserve (a server's default is the larger of 1 GiB and 5 %).
const DEV_SHARD_RESERVE_BYTES: u64 = 64 * 1024 * 1024;

/// `baobab --version`: the crate version and the commit built (`cli/build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BAOBAB_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "baobab",
    version = VERSION,
    about = "Baobab: a distributed, erasure-coded, S3-compatible object store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the roles a config file names (storage node, gateway, or both).
    Server {
        /// Path of the baobab.toml.
        #[arg(long, short, env = "BAOBAB_CONFIG")]
        config: PathBuf,
    },
    /// Run a local cluster in one process: 3 storage nodes in 3 sites (2+1) and one gateway.
    Dev {
        /// Where the cluster keeps its data.
        #[arg(long, default_value = "./baobab-data")]
        data_dir: PathBuf,
        /// S3 port on 127.0.0.1; the storage nodes use the three ports after it, and the
        /// Prometheus metrics (`/metrics`) the fourth.
        #[arg(long, default_value_t = 3900)]
        s3_port: u16,
        /// Seconds the data of replaced or deleted objects stays readable for GETs in flight.
        #[arg(long, default_value_t = baobab::retire::DEFAULT_RETIRED_DATA_GRACE.as_secs())]
        retired_data_grace_secs: u64,
        /// Free space each storage node leaves to its metadata; small by default, since the dev
        /// cluster's three nodes share one disk that is often a laptop's or a CI runner's.
        #[arg(long, default_value_t = DEV_SHARD_RESERVE_BYTES)]
        shard_reserve_bytes: u64,
        /// Seconds between rounds of the garbage collector of unreferenced shard files.
        #[arg(long, default_value_t = baobab::gc::DEFAULT_GC_INTERVAL.as_secs(),
              value_parser = clap::value_parser!(u64).range(1..))]
        gc_interval_secs: u64,
        /// Seconds a shard file must be old before the garbage collector may delete it.
        #[arg(long, default_value_t = baobab::gc::DEFAULT_GC_MIN_AGE.as_secs(),
              value_parser = clap::value_parser!(u64).range(1..))]
        gc_min_age_secs: u64,
        /// Seconds between the starts of two scrub passes (every shard re-read and verified).
        #[arg(long, default_value_t = baobab::repair::DEFAULT_SCRUB_INTERVAL.as_secs(),
              value_parser = clap::value_parser!(u64).range(1..))]
        scrub_interval_secs: u64,
    },
    /// Manage access keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Manage buckets and who may use them.
    Bucket {
        #[command(subcommand)]
        command: BucketCommand,
    },
    /// Show the metadata leader and which storage nodes answer, as JSON.
    Status {
        #[arg(long, short, env = "BAOBAB_CONFIG")]
        config: PathBuf,
    },
    /// Healing and scrub: what is queued, what was rebuilt and verified.
    Repair {
        #[command(subcommand)]
        command: RepairCommand,
    },
    /// The cluster CA and the certificates of nodes, gateways and admin tools (mutual TLS on
    /// the internal RPC).
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// Create a cluster CA: DIR/ca.pem and DIR/ca.key (keep the key offline or on one admin
    /// machine; it mints cluster identities).
    Ca {
        #[arg(long)]
        dir: PathBuf,
        /// A name for the CA (shown in its subject).
        #[arg(long, default_value = "baobab")]
        name: String,
        #[arg(long, default_value_t = baobab::rpc::cert::DEFAULT_CA_DAYS,
              value_parser = clap::value_parser!(u32).range(1..))]
        days: u32,
    },
    /// Issue a certificate for a storage node, a gateway or an admin tool, signed by the CA in
    /// --ca-dir: <out>/node-N.pem and .key (or gateway.*, admin.*).
    Issue {
        /// The directory holding ca.pem and ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Where to write the certificate and key (default: --ca-dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A storage node's certificate, for node id N.
        #[arg(long, group = "who", value_parser = clap::value_parser!(u64).range(1..))]
        node: Option<u64>,
        /// A gateway's certificate.
        #[arg(long, group = "who")]
        gateway: bool,
        /// An admin tool's certificate (`baobab key …`, `bucket …`, `status`).
        #[arg(long, group = "who")]
        admin: bool,
        #[arg(long, default_value_t = baobab::rpc::cert::DEFAULT_CERT_DAYS,
              value_parser = clap::value_parser!(u32).range(1..))]
        days: u32,
    },
}

async fn cert_command(c: CertCommand) -> anyhow::Result<()> {
    match c {
        CertCommand::Ca { dir, name, days } => cert::create_ca(&dir, &name, days).await,
        CertCommand::Issue {
            ca_dir,
            out,
            node,
            gateway,
            admin,
            days,
        } => {
            let identity = match (node, gateway, admin) {
                (Some(n), false, false) => baobab::rpc::Identity::Node(baobab::types::NodeId(n)),
                (None, true, false) => baobab::rpc::Identity::Gateway,
                (None, false, true) => baobab::rpc::Identity::Admin,
                _ => anyhow::bail!("name exactly one of --node N, --gateway, --admin"),
            };
            cert::issue(&ca_dir, out.as_deref(), identity, days).await
        }
    }
}

#[derive(Subcommand)]
enum RepairCommand {
    /// The repair queue and what healing and the scrub verified (text, or JSON with --json).
    Status {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        json: bool,
    },
}

/// The config file of any process of the cluster (it names the nodes and the secret).
#[derive(clap::Args)]
struct ConfigArg {
    #[arg(long, short, env = "BAOBAB_CONFIG")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn path(&self) -> anyhow::Result<&std::path::Path> {
        self.config
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("--config FILE (or BAOBAB_CONFIG) is required"))
    }
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an access key (idempotent for a given id); prints it, with its secret, as JSON.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// A name for the key.
        #[arg(long)]
        name: String,
        /// Let the key create buckets.
        #[arg(long)]
        allow_create_bucket: bool,
        /// Use this key id instead of a random one (with --secret-stdin).
        #[arg(long, requires = "secret_stdin")]
        key_id: Option<String>,
        /// Read the secret from the first line of standard input instead of generating one
        /// (never from the command line, where other users and shell histories see it).
        #[arg(long, requires = "key_id")]
        secret_stdin: bool,
    },
    /// List access keys (without secrets).
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show a key and its rights on buckets.
    Info {
        #[command(flatten)]
        config: ConfigArg,
        key_id: String,
    },
    /// Delete a key: its requests are refused within seconds on every gateway.
    Delete {
        #[command(flatten)]
        config: ConfigArg,
        key_id: String,
    },
    /// Give a key a cluster-wide right.
    Allow {
        #[command(flatten)]
        config: ConfigArg,
        key_id: String,
        /// May create buckets.
        #[arg(long, required = true)]
        create_bucket: bool,
    },
    /// Take a cluster-wide right from a key.
    Deny {
        #[command(flatten)]
        config: ConfigArg,
        key_id: String,
        #[arg(long, required = true)]
        create_bucket: bool,
    },
}

/// Which rights a `bucket allow|deny` names.
#[derive(clap::Args)]
struct RightsArg {
    /// The access key the rights are for.
    #[arg(long)]
    key: String,
    /// Read and list objects.
    #[arg(long)]
    read: bool,
    /// Write and delete objects.
    #[arg(long)]
    write: bool,
    /// Bucket settings and deletion.
    #[arg(long)]
    owner: bool,
}

impl RightsArg {
    fn rights(&self) -> baobab::meta::BucketRights {
        baobab::meta::BucketRights {
            read: self.read,
            write: self.write,
            owner: self.owner,
        }
    }
}

#[derive(Subcommand)]
enum BucketCommand {
    /// Create a bucket owned by a key.
    Create {
        #[command(flatten)]
        config: ConfigArg,
        name: String,
        /// The access key that owns it.
        #[arg(long)]
        owner: String,
    },
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show a bucket's owner and grants.
    Info {
        #[command(flatten)]
        config: ConfigArg,
        name: String,
    },
    /// Delete an empty bucket.
    Delete {
        #[command(flatten)]
        config: ConfigArg,
        name: String,
    },
    /// Give a key rights on a bucket.
    Allow {
        #[command(flatten)]
        config: ConfigArg,
        name: String,
        #[command(flatten)]
        rights: RightsArg,
    },
    /// Take rights on a bucket from a key.
    Deny {
        #[command(flatten)]
        config: ConfigArg,
        name: String,
        #[command(flatten)]
        rights: RightsArg,
    },
}

async fn key_command(c: KeyCommand) -> anyhow::Result<()> {
    match c {
        KeyCommand::Create {
            config,
            name,
            allow_create_bucket,
            key_id,
            secret_stdin,
        } => {
            let pair = match key_id {
                Some(id) if secret_stdin => Some((id, admin::read_secret_from_stdin()?)),
                _ => None,
            };
            admin::key_create(config.path()?, name, pair, allow_create_bucket).await
        }
        KeyCommand::List { config } => admin::key_list(config.path()?).await,
        KeyCommand::Info { config, key_id } => admin::key_info(config.path()?, &key_id).await,
        KeyCommand::Delete { config, key_id } => admin::key_delete(config.path()?, &key_id).await,
        KeyCommand::Allow {
            config,
            key_id,
            create_bucket: _,
        } => admin::key_create_bucket_right(config.path()?, &key_id, true).await,
        KeyCommand::Deny {
            config,
            key_id,
            create_bucket: _,
        } => admin::key_create_bucket_right(config.path()?, &key_id, false).await,
    }
}

async fn bucket_command(c: BucketCommand) -> anyhow::Result<()> {
    match c {
        BucketCommand::Create {
            config,
            name,
            owner,
        } => admin::bucket_create(config.path()?, &name, &owner).await,
        BucketCommand::List { config } => admin::bucket_list(config.path()?).await,
        BucketCommand::Info { config, name } => admin::bucket_info(config.path()?, &name).await,
        BucketCommand::Delete { config, name } => admin::bucket_delete(config.path()?, &name).await,
        BucketCommand::Allow {
            config,
            name,
            rights,
        } => admin::bucket_grant(config.path()?, &name, &rights.key, rights.rights(), true).await,
        BucketCommand::Deny {
            config,
            name,
            rights,
        } => admin::bucket_grant(config.path()?, &name, &rights.key, rights.rights(), false).await,
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("baobab: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server { config } => run::server(&config).await,
            Command::Dev {
                data_dir,
                s3_port,
                retired_data_grace_secs,
                shard_reserve_bytes,
                gc_interval_secs,
                gc_min_age_secs,
                scrub_interval_secs,
            } => {
                dev::run(
                    &data_dir,
                    s3_port,
                    std::time::Duration::from_secs(retired_data_grace_secs),
                    baobab::shard::ShardReserve::Bytes(shard_reserve_bytes),
                    baobab::gc::GcConfig {
                        interval: std::time::Duration::from_secs(gc_interval_secs),
                        min_age: std::time::Duration::from_secs(gc_min_age_secs),
                    },
                    baobab::repair::RepairConfig {
                        scrub_interval: std::time::Duration::from_secs(scrub_interval_secs),
                        ..Default::default()
                    },
                )
                .await
            }
            Command::Key { command } => key_command(command).await,
            Command::Bucket { command } => bucket_command(command).await,
            Command::Status { config } => run::status(&config).await,
            Command::Repair {
                command: RepairCommand::Status { config, json },
            } => repair::status(config.path()?, json).await,
            Command::Cert { command } => cert_command(command).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baobab: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
