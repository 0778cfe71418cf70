//! `runtime state get NAME KEY` and `runtime state scan NAME`: query a deployment's durable
//! state (what its handler keeps with `ctx.state()`).

use clap::{Args, Subcommand};

use rill_runtime::admin::api::{StateEntry, StateScan};
use rill_runtime::admin::client::Client;

#[derive(Subcommand, Debug)]
pub enum StateCommand {
    /// Print the value of one key (the state of committed offsets only).
    Get(GetArgs),
    /// Print the keys and values starting with a prefix, in key order.
    Scan(ScanArgs),
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Deployment name.
    name: String,
    /// The key (UTF-8).
    key: String,
    /// Look only in this partition's store (default: every partition, in order).
    #[arg(long)]
    partition: Option<u32>,
    /// Print the whole answer as JSON (partition, position, value).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Deployment name.
    name: String,
    /// Only keys starting with this.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Stop after this many entries (default: all).
    #[arg(long)]
    limit: Option<usize>,
    /// Only this partition's store.
    #[arg(long)]
    partition: Option<u32>,
    /// One JSON object per line (key, partition, position, value).
    #[arg(long)]
    json: bool,
}

/// Percent-encodes `s` for a URL path segment or query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn value_text(e: &StateEntry) -> String {
    match (&e.value, &e.value_b64) {
        (Some(v), _) => v.clone(),
        (None, Some(b)) => format!("base64:{b}"),
        (None, None) => String::new(),
    }
}

pub fn run(client: &Client, cmd: StateCommand) -> anyhow::Result<()> {
    match cmd {
        StateCommand::Get(a) => {
            let mut path = format!("/v1/deployments/{}/state/{}", a.name, encode(&a.key));
            if let Some(p) = a.partition {
                path += &format!("?partition={p}");
            }
            let e: StateEntry = client.get(&path)?;
            if a.json {
                outln!("{}", serde_json::to_string(&e)?)?;
            } else {
                outln!("{}", value_text(&e))?;
            }
        }
        StateCommand::Scan(a) => {
            let mut after: Option<String> = None;
            let mut left = a.limit.unwrap_or(usize::MAX);
            while left > 0 {
                let mut path = format!(
                    "/v1/deployments/{}/state?prefix={}&limit={}",
                    a.name,
                    encode(&a.prefix),
                    left.min(1000)
                );
                if let Some(p) = a.partition {
                    path += &format!("&partition={p}");
                }
                if let Some(k) = &after {
                    path += &format!("&after={}", encode(k));
                }
                let page: StateScan = client.get(&path)?;
                if !page.elsewhere.is_empty() && after.is_none() {
                    eprintln!(
                        "partitions {:?} are run by other hosts of the cluster: their state is \
                         queried there",
                        page.elsewhere
                    );
                }
                for e in &page.entries {
                    if a.json {
                        outln!("{}", serde_json::to_string(e)?)?;
                    } else {
                        outln!("{}\t{}", e.key, value_text(e))?;
                    }
                }
                left = left.saturating_sub(page.entries.len());
                match page.next_after {
                    Some(k) => after = Some(k),
                    None => break,
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_percent_encoded() {
        assert_eq!(super::encode("seen/a b"), "seen%2Fa%20b");
        assert_eq!(super::encode("c-42"), "c-42");
    }
}
