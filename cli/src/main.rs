//! The `baobab` binary: `server` (roles from a config file), `dev` (a whole local cluster in one
//! process, zero configuration), and admin commands (`key create`, `status`).

mod config;
mod dev;
mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "baobab",
    version,
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
        /// S3 port on 127.0.0.1; the storage nodes use the three ports after it.
        #[arg(long, default_value_t = 3900)]
        s3_port: u16,
        /// Seconds the data of replaced or deleted objects stays readable for GETs in flight.
        #[arg(long, default_value_t = baobab::coord::DEFAULT_RETIRED_DATA_GRACE.as_secs())]
        retired_data_grace_secs: u64,
    },
    /// Manage access keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Show the metadata leader and which storage nodes answer, as JSON.
    Status {
        #[arg(long, short, env = "BAOBAB_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an access key (idempotent for a given id); prints it as JSON.
    Create {
        #[arg(long, short, env = "BAOBAB_CONFIG")]
        config: PathBuf,
        /// A name for the key.
        #[arg(long)]
        name: String,
        /// Use this key id instead of a random one.
        #[arg(long, requires = "secret")]
        key_id: Option<String>,
        /// Use this secret instead of a random one.
        #[arg(long, requires = "key_id")]
        secret: Option<String>,
    },
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
            } => {
                dev::run(
                    &data_dir,
                    s3_port,
                    std::time::Duration::from_secs(retired_data_grace_secs),
                )
                .await
            }
            Command::Key {
                command:
                    KeyCommand::Create {
                        config,
                        name,
                        key_id,
                        secret,
                    },
            } => run::key_create(&config, name, key_id.zip(secret)).await,
            Command::Status { config } => run::status(&config).await,
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
