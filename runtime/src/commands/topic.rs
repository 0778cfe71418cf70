//! `runtime topic create|list|describe|delete`.

use clap::Subcommand;

use rill_runtime::admin::api::{CreateTopic, TopicInfo};
use rill_runtime::admin::client::Client;

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name: letters, digits, '.', '_' and '-'.
        name: String,
        /// Number of partitions (the host's default when absent, normally 1).
        #[arg(long, short)]
        partitions: Option<u32>,
        /// Flush policy: always (ack after fsync), never (page cache) or interval:MS.
        #[arg(long)]
        flush: Option<String>,
        /// Delete whole segments older than this, e.g. 7d, 12h, 30m, 1500ms.
        #[arg(long, value_parser = parse_duration_ms)]
        retention: Option<u64>,
        /// Delete the oldest segments beyond this size per partition, e.g. 10GiB, 512MiB.
        #[arg(long, value_parser = parse_bytes)]
        retention_bytes: Option<u64>,
        /// Roll segments at this size, e.g. 1GiB (the default).
        #[arg(long, value_parser = parse_bytes)]
        segment_bytes: Option<u64>,
        /// `delete` (the default), `compact` (keep the latest record per key) or
        /// `compact,delete`, as Kafka's cleanup.policy.
        #[arg(long)]
        cleanup_policy: Option<String>,
        /// How long a compacted topic keeps tombstones, e.g. 1d (the default), 1h.
        #[arg(long, value_parser = parse_duration_ms)]
        delete_retention: Option<u64>,
        /// Never compact away a record younger than this, e.g. 10m (default 0).
        #[arg(long, value_parser = parse_duration_ms)]
        min_compaction_lag: Option<u64>,
        /// Refuse records whose value is not framed with the id of a schema registered
        /// under `<topic>-value`, or does not decode with it (Confluent's
        /// confluent.value.schema.validation).
        #[arg(long)]
        value_schema_validation: bool,
        /// The same for keys, against `<topic>-key`.
        #[arg(long)]
        key_schema_validation: bool,
    },
    /// List topics.
    List,
    /// Show a topic's partitions, offsets and sizes.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic and all its records.
    Delete {
        /// Topic name.
        name: String,
    },
}

pub fn run(client: &Client, cmd: TopicCommand) -> anyhow::Result<()> {
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            flush,
            retention,
            retention_bytes,
            segment_bytes,
            cleanup_policy,
            delete_retention,
            min_compaction_lag,
            value_schema_validation,
            key_schema_validation,
        } => {
            let req = CreateTopic {
                name,
                partitions,
                flush,
                retention_ms: retention,
                retention_bytes,
                segment_bytes,
                cleanup_policy,
                delete_retention_ms: delete_retention,
                min_compaction_lag_ms: min_compaction_lag,
                value_schema_validation: value_schema_validation.then_some(true),
                key_schema_validation: key_schema_validation.then_some(true),
            };
            let t: TopicInfo = client.post("/v1/topics", &req)?;
            outln!(
                "created topic {} with {} partition(s), flush {}",
                t.name,
                t.partitions,
                t.flush
            )?;
        }
        TopicCommand::List => {
            let topics: Vec<TopicInfo> = client.get("/v1/topics")?;
            outln!(
                "{:<32} {:>10} {:>14} {:>12}",
                "TOPIC",
                "PARTITIONS",
                "RECORDS",
                "BYTES"
            )?;
            for t in topics {
                let records: i64 = t.partition_info.iter().map(|p| p.end - p.start).sum();
                let bytes: u64 = t.partition_info.iter().map(|p| p.size_bytes).sum();
                outln!(
                    "{:<32} {:>10} {:>14} {:>12}",
                    t.name,
                    t.partitions,
                    records,
                    bytes
                )?;
            }
        }
        TopicCommand::Describe { name } => {
            let t: TopicInfo = client.get(&format!("/v1/topics/{name}"))?;
            outln!(
                "topic {}  partitions {}  flush {}  retention {}  retention-bytes {}  cleanup {}",
                t.name,
                t.partitions,
                t.flush,
                t.retention_ms
                    .map(|m| format!("{m}ms"))
                    .unwrap_or_else(|| "none".into()),
                t.retention_bytes
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "none".into()),
                t.cleanup_policy,
            )?;
            if t.value_schema_validation || t.key_schema_validation {
                let parts: Vec<&str> = [
                    (t.value_schema_validation, "values"),
                    (t.key_schema_validation, "keys"),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, w)| *w)
                .collect();
                outln!("schema validation: {}", parts.join(" and "))?;
            }
            outln!(
                "{:>9} {:>14} {:>14} {:>14}",
                "PARTITION",
                "START",
                "END",
                "BYTES"
            )?;
            for p in t.partition_info {
                outln!(
                    "{:>9} {:>14} {:>14} {:>14}",
                    p.partition,
                    p.start,
                    p.end,
                    p.size_bytes
                )?;
            }
        }
        TopicCommand::Delete { name } => {
            client.delete(&format!("/v1/topics/{name}"))?;
            outln!("deleted topic {name}")?;
        }
    }
    Ok(())
}

/// `7d`, `12h`, `30m`, `10s`, `1500ms` or plain milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else if let Some(n) = s.strip_suffix('d') {
        (n, 86_400_000)
    } else {
        (s, 1)
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("invalid duration '{s}' (e.g. 7d, 12h, 30m, 10s, 1500ms)"))
}

/// `10GiB`, `512MiB`, `64KiB`, `1GB` or plain bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let units: [(&str, u64); 8] = [
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("KB", 1000),
        ("B", 1),
        ("", 1),
    ];
    for (suffix, mult) in units {
        if let Some(n) = s.strip_suffix(suffix)
            && let Ok(n) = n.trim().parse::<u64>()
        {
            return n
                .checked_mul(mult)
                .ok_or_else(|| format!("size '{s}' is too large"));
        }
    }
    Err(format!("invalid size '{s}' (e.g. 10GiB, 512MiB, 4096)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration_ms("7d").unwrap(), 7 * 86_400_000);
        assert_eq!(parse_duration_ms("1500ms").unwrap(), 1500);
        assert!(parse_duration_ms("soon").is_err());
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn create_takes_the_compaction_flags() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(subcommand)]
            cmd: TopicCommand,
        }
        let cli = Cli::try_parse_from([
            "topic",
            "create",
            "kv",
            "--cleanup-policy",
            "compact,delete",
            "--delete-retention",
            "1h",
            "--min-compaction-lag",
            "10m",
        ])
        .unwrap();
        let TopicCommand::Create {
            cleanup_policy,
            delete_retention,
            min_compaction_lag,
            ..
        } = cli.cmd
        else {
            panic!("not create");
        };
        assert_eq!(cleanup_policy.as_deref(), Some("compact,delete"));
        assert_eq!(delete_retention, Some(3_600_000));
        assert_eq!(min_compaction_lag, Some(600_000));
    }
}
