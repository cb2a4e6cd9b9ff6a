//! `baobab repair status`: what the repair queue holds and what healing and the scrub have
//! re-read and verified, from the metadata leader. Only verified work is counted: a shard is
//! "healed" once it was rebuilt and then verified where it lives, and the scrub counts a shard
//! only when its node read it whole and every block matched its BLAKE3.

use std::path::Path;

use baobab::meta::request::RepairStatus;
use baobab::meta::{HealRecord, RepairReport, ScrubCounts};
use serde_json::{json, Value};

/// Prints the report, as JSON with `--json`, else as text.
pub async fn status(config_path: &Path, as_json: bool) -> anyhow::Result<()> {
    let meta = crate::admin::connect(config_path)?;
    let report = meta.ask(RepairStatus).await??;
    if as_json {
        println!("{}", to_json(&report));
    } else {
        print!("{}", to_text(&report));
    }
    Ok(())
}

fn pending_json(e: &HealRecord) -> Value {
    json!({
        "version": e.version.to_string(),
        "record": String::from_utf8_lossy(&e.owner),
        "shards": e.damage.iter().map(|(i, d)| json!({"index": i, "damage": format!("{d:?}").to_lowercase()})).collect::<Vec<_>>(),
        "queued_ms": e.queued_ms,
        "attempts": e.attempts,
        "next_attempt_ms": e.next_attempt_ms,
        "last_error": e.last_error,
    })
}

/// `object` with the scrub counts' fields added.
fn with_counts(mut object: Value, counts: &ScrubCounts) -> Value {
    if let (Value::Object(o), Ok(Value::Object(c))) = (&mut object, serde_json::to_value(counts)) {
        o.extend(c);
    }
    object
}

fn to_json(r: &RepairReport) -> Value {
    let s = &r.stats;
    let scrub = &s.scrub;
    json!({
        "queue": {
            "pieces": r.queued_pieces,
            "shards_missing": r.shards_missing,
            "shards_corrupt": r.shards_corrupt,
            "unplaced": r.shards_unplaced,
        },
        "healed": {
            "shards": s.healed_shards,
            "bytes": s.healed_bytes,
            "pieces_verified": s.healed_pieces,
            "last_ms": s.last_healed_ms,
            "failed_attempts": s.failed_attempts,
        },
        "scrub": with_counts(json!({
            "passes_completed": scrub.passes_completed,
            "in_progress": scrub.cursor.is_some(),
            "pass_started_ms": scrub.pass_started_ms,
            "last_pass": scrub.last_pass.as_ref().map(|p| with_counts(json!({
                "started_ms": p.started_ms,
                "finished_ms": p.finished_ms,
            }), &p.counts)),
        }), &scrub.counts),
        "pending": r.pending.iter().map(pending_json).collect::<Vec<_>>(),
    })
}

fn to_text(r: &RepairReport) -> String {
    let s = &r.stats;
    let mut out = String::new();
    if r.queued_pieces == 0 {
        out.push_str("queue: empty (nothing known to be damaged)\n");
    } else {
        out.push_str(&format!(
            "queue: {} pieces to heal ({} shards missing, {} corrupt, {} never placed)\n",
            r.queued_pieces, r.shards_missing, r.shards_corrupt, r.shards_unplaced
        ));
    }
    out.push_str(&format!(
        "healed: {} shards ({} bytes) rebuilt and verified; {} pieces verified whole; {} failed attempts\n",
        s.healed_shards, s.healed_bytes, s.healed_pieces, s.failed_attempts
    ));
    let scrub = &s.scrub;
    out.push_str(&format!(
        "scrub: {} passes completed{}\n",
        scrub.passes_completed,
        if scrub.cursor.is_some() {
            format!(
                "; pass in progress: {} shards verified, {} bad, {} unchecked",
                scrub.counts.shards_verified,
                scrub.counts.shards_bad,
                scrub.counts.shards_unchecked
            )
        } else {
            String::new()
        }
    ));
    if let Some(p) = &scrub.last_pass {
        out.push_str(&format!(
            "last complete pass: {} shards ({} bytes) verified, {} bad, {} unchecked\n",
            p.counts.shards_verified,
            p.counts.bytes_verified,
            p.counts.shards_bad,
            p.counts.shards_unchecked
        ));
    }
    for e in &r.pending {
        out.push_str(&format!(
            "  {} {}: {:?}, {} attempts{}\n",
            e.version,
            String::from_utf8_lossy(&e.owner),
            e.damage,
            e.attempts,
            e.last_error
                .as_ref()
                .map(|x| format!(", last error: {x}"))
                .unwrap_or_default()
        ));
    }
    out
}
