//! A stand-alone Kafka broker over a Rill log, for development and client testing.
//!
//! ```text
//! cargo run -p rill-kafka --example broker -- DATA_DIR [ADDR] [PARTITIONS]
//! kcat -b 127.0.0.1:9092 -L
//! ```
//!
//! It opens (or creates) the log in `DATA_DIR`, listens on `ADDR` (default
//! `127.0.0.1:9092`; port 0 picks a free one), auto-creates topics with `PARTITIONS`
//! partitions (default 1), prints `listening on HOST:PORT` once ready, and stops on Ctrl-C
//! (or, with `RILL_EXIT_ON_STDIN_EOF=1`, when its standard input closes), closing the log.

use std::sync::Arc;

use anyhow::Context;
use rill_kafka::{Broker, KafkaConfig};
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .context("usage: broker DATA_DIR [ADDR] [PARTITIONS]")?;
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let partitions: u32 = args
        .next()
        .map_or(Ok(1), |p| p.parse())
        .context("PARTITIONS")?;

    // Step 1: open the log; the broker never touches files itself.
    let log = Arc::new(rill_log::Log::open(&dir, rill_log::LogOptions::default())?);
    // Step 2: bind first, so a port of 0 resolves before anyone is told where to connect.
    let cfg = KafkaConfig {
        listen: addr.parse().context("ADDR")?,
        default_partitions: partitions,
        ..KafkaConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    // Step 3: serve until Ctrl-C, or stdin EOF if asked (so a parent test process can stop
    // us by dropping our stdin, and we never outlive it).
    let watch_stdin = std::env::var_os("RILL_EXIT_ON_STDIN_EOF").is_some();
    let shutdown = async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        let eof = async {
            if !watch_stdin {
                std::future::pending::<()>().await;
            }
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = eof => {}
        }
    };
    let broker = Broker::new(log.clone(), cfg)?;
    broker.clone().serve(listener, shutdown).await?;
    eprintln!("{:?}", broker.stats().snapshot());
    log.close()?;
    Ok(())
}
