//! Admin commands against a running cluster (`baobab key …`, `baobab bucket …`): each is one
//! metadata command or query through the cluster's Raft leader, answered as JSON on stdout.
//! Secrets are printed only by `key create`, never logged.

use std::path::Path;
use std::time::Duration;

use baobab::codec::seal::SealKey;
use baobab::meta::request::{
    CreateBucket, DeleteAccessKey, GetAccessKey, GetBucket, ListAccessKeys, ListBuckets,
    SetBucketGrant, SetKeyCreateBucket,
};
use baobab::meta::{
    AccessKeyRecord, BucketRecord, BucketRights, MetaClient, Refused, WriteRequest,
};
use baobab::rpc::RpcClient;
use baobab::types::BucketId;
use serde_json::{json, Value};

use crate::config::Config;
use crate::run::{ensure_access_key, new_key_pair};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn connect(config_path: &Path) -> anyhow::Result<MetaClient> {
    Ok(connect_sealing(config_path)?.0)
}

/// The metadata client and the key that seals access-key secrets.
fn connect_sealing(config_path: &Path) -> anyhow::Result<(MetaClient, SealKey)> {
    let cfg = Config::load(config_path)?;
    let secret = cfg.secret()?;
    let seal = crate::run::secrets_key(&secret);
    let rpc = RpcClient::new(cfg.rpc_tls()?, cfg.members().into_iter().collect());
    Ok((
        MetaClient::new(rpc, cfg.members().keys().copied().collect()),
        seal,
    ))
}

fn print(v: Value) {
    println!("{v}");
}

async fn write(meta: &MetaClient, req: impl WriteRequest) -> anyhow::Result<Result<(), Refused>> {
    Ok(meta.send(req).await?)
}

async fn key(meta: &MetaClient, key_id: &str) -> anyhow::Result<AccessKeyRecord> {
    let found = meta
        .ask(GetAccessKey {
            key_id: key_id.to_string(),
        })
        .await??;
    found.ok_or_else(|| anyhow::anyhow!("no access key {key_id}"))
}

async fn bucket(meta: &MetaClient, name: &str) -> anyhow::Result<BucketRecord> {
    let found = meta
        .ask(GetBucket {
            name: name.to_string(),
        })
        .await??;
    found.ok_or_else(|| anyhow::anyhow!("no bucket {name}"))
}

async fn buckets(meta: &MetaClient) -> anyhow::Result<Vec<BucketRecord>> {
    Ok(meta.ask(ListBuckets).await??)
}

fn expect_ok(r: Result<(), Refused>, what: &str) -> anyhow::Result<()> {
    r.map_err(|refused| anyhow::anyhow!("{what}: {refused}"))
}

fn rights_json(r: BucketRights) -> Value {
    json!({"read": r.read, "write": r.write, "owner": r.owner})
}

fn key_json(k: &AccessKeyRecord) -> Value {
    json!({"access_key_id": k.key_id, "name": k.name, "allow_create_bucket": k.allow_create_bucket})
}

/// The first line of standard input, as an access key's secret (at least 8 characters, no
/// surrounding whitespace).
pub fn read_secret_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let secret = line.trim().to_string();
    if secret.len() < 8 {
        anyhow::bail!("--secret-stdin: the secret on standard input must be at least 8 characters");
    }
    Ok(secret)
}

pub async fn key_create(
    config_path: &Path,
    name: String,
    pair: Option<(String, String)>,
    allow_create_bucket: bool,
) -> anyhow::Result<()> {
    let (meta, seal) = connect_sealing(config_path)?;
    let pair = pair.unwrap_or_else(new_key_pair);
    let mut record = ensure_access_key(
        &meta,
        &seal,
        name,
        pair,
        allow_create_bucket,
        Duration::from_secs(30),
    )
    .await?;
    if allow_create_bucket && !record.allow_create_bucket {
        expect_ok(
            write(
                &meta,
                SetKeyCreateBucket {
                    key_id: record.key_id.clone(),
                    allow: true,
                },
            )
            .await?,
            "key create",
        )?;
        record.allow_create_bucket = true;
    }
    print(json!({
        "access_key_id": record.key_id,
        "secret_access_key": record.secret,
        "name": record.name,
        "allow_create_bucket": record.allow_create_bucket,
    }));
    Ok(())
}

pub async fn key_list(config_path: &Path) -> anyhow::Result<()> {
    let meta = connect(config_path)?;
    let keys = meta.ask(ListAccessKeys).await??;
    print(Value::Array(keys.iter().map(key_json).collect()));
    Ok(())
}

pub async fn key_info(config_path: &Path, key_id: &str) -> anyhow::Result<()> {
    let meta = connect(config_path)?;
    let k = key(&meta, key_id).await?;
    let mut v = key_json(&k);
    let rights: Vec<Value> = buckets(&meta)
        .await?
        .iter()
        .filter_map(|b| {
            let r = b.rights_of(key_id);
            r.any().then(|| {
                let mut j = rights_json(r);
                j["bucket"] = json!(b.name);
                j
            })
        })
        .collect();
    v["buckets"] = Value::Array(rights);
    print(v);
    Ok(())
}

pub async fn key_delete(config_path: &Path, key_id: &str) -> anyhow::Result<()> {
    let meta = connect(config_path)?;
    let r = write(
        &meta,
        DeleteAccessKey {
            key_id: key_id.to_string(),
        },
    )
    .await?;
    expect_ok(r, "key delete")
}

pub async fn key_create_bucket_right(
    config_path: &Path,
    key_id: &str,
    allow: bool,
) -> anyhow::Result<()> {
    let meta = connect(config_path)?;
    let r = write(
        &meta,
        SetKeyCreateBucket {
            key_id: key_id.to_string(),
            allow,
        },
    )
    .await?;
    expect_ok(r, "key allow/deny")?;
    print(key_json(&key(&meta, key_id).await?));
    Ok(())
}

pub async fn bucket_create(config_path: &Path, name: &str, owner: &str) -> anyhow::Result<()> {
    let meta = connect(config_path)?;
    key(&meta, owner).await?;
    let r = write(
        &meta,
        CreateBucket {
            name: name.to_string(),
            id: BucketId(rand::random()),
            owner: owner.to_string(),
            created_ms: now_ms(),
        },
    )
    .await?;
    match r {
        Ok(()) | Err(Refused::BucketAlreadyOwnedByYou) => {
            print(bucket_json(&bucket(&meta, name).await?));
            Ok(())
        }
        Err(Refused::BucketAlreadyExists) => {
            anyhow::bail!("bucket {name} exists and belongs to another key")
        }
        Err(other) => anyhow::bail!("bucket create: {other}"),
    }
}

fn bucket_json(b: &BucketRecord) -> Value {
    let grants: Vec<Value> = b
        .grants
        .iter()
        .map(|(k, r)| {
            let mut j = rights_json(*r);
            j["access_key_id"] = json!(k);
            j
        })
        .collect();
    json!({
        "name": b.name,
        "id": format!("{:016x}", b.id.0),
        "owner": b.owner,
        "created_ms": b.created_ms,
        "grants": grants,
    })
}

pub async fn bucket_list(config_path: &Path) -> anyhow::Result<()> {
    let meta = connect(config_path)?;
    let list: Vec<Value> = buckets(&meta)
        .await?
        .iter()
        .map(|b| json!({"name": b.name, "owner": b.owner, "created_ms": b.created_ms}))
        .collect();
    print(Value::Array(list));
    Ok(())
}

pub async fn bucket_info(config_path: &Path, name: &str) -> anyhow::Result<()> {
    let meta = connect(config_path)?;
    print(bucket_json(&bucket(&meta, name).await?));
    Ok(())
}

pub async fn bucket_delete(config_path: &Path, name: &str) -> anyhow::Result<()> {
    let meta = connect(config_path)?;
    let r = baobab::meta::buckets::delete_bucket(&meta, name).await?;
    expect_ok(r.map(|_| ()), "bucket delete")
}

/// Adds (`allow`) or removes the named rights of `key_id` on a bucket.
pub async fn bucket_grant(
    config_path: &Path,
    name: &str,
    key_id: &str,
    change: BucketRights,
    allow: bool,
) -> anyhow::Result<()> {
    if !change.any() {
        anyhow::bail!("name at least one of --read, --write, --owner");
    }
    let meta = connect(config_path)?;
    let b = bucket(&meta, name).await?;
    let mut r = b.grants.get(key_id).copied().unwrap_or_default();
    let set = |slot: &mut bool, named: bool| {
        if named {
            *slot = allow;
        }
    };
    set(&mut r.read, change.read);
    set(&mut r.write, change.write);
    set(&mut r.owner, change.owner);
    let answer = write(
        &meta,
        SetBucketGrant {
            bucket: name.to_string(),
            key_id: key_id.to_string(),
            rights: r,
        },
    )
    .await?;
    expect_ok(answer, "bucket allow/deny")?;
    print(bucket_json(&bucket(&meta, name).await?));
    Ok(())
}
