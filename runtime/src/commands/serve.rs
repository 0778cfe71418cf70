//! `runtime serve`: run a host until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use rill_runtime::config::Config;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML config file; every key is optional (see README).
    #[arg(long, short, env = "RILL_CONFIG")]
    config: Option<PathBuf>,
    /// Data dir (overrides the config file).
    #[arg(long, env = "RILL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Admin API address (overrides the config file). Port 0 picks a free port.
    #[arg(long, env = "RILL_ADMIN_ADDR")]
    admin_addr: Option<SocketAddr>,
    /// Kafka listener address (overrides the config file). Port 0 picks a free port.
    #[arg(long, env = "RILL_KAFKA_ADDR")]
    kafka_addr: Option<SocketAddr>,
    /// Turn the Kafka listener off.
    #[arg(long, env = "RILL_NO_KAFKA")]
    no_kafka: bool,
    /// Flush policy for new topics: always, never or interval:MS.
    #[arg(long, env = "RILL_DEFAULT_FLUSH")]
    default_flush: Option<String>,
    /// Partitions for topics created without a count (including Kafka auto-create).
    #[arg(long, env = "RILL_DEFAULT_PARTITIONS")]
    default_partitions: Option<u32>,
    /// Write `/tmp/perf-<pid>.map` so `perf` names the functions of compiled handlers.
    #[arg(long, env = "RILL_WASM_PERF_MAP")]
    wasm_perf_map: bool,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(a) = args.admin_addr {
        config.admin_addr = a;
    }
    if let Some(a) = args.kafka_addr {
        config.kafka.config.listen = a;
    }
    if args.no_kafka {
        config.kafka.enabled = false;
    }
    if args.wasm_perf_map {
        config.wasm_perf_map = true;
    }
    if let Some(f) = args.default_flush {
        config.defaults.flush = f.parse().map_err(|_| {
            anyhow::anyhow!("invalid --default-flush '{f}' (want always, never or interval:MS)")
        })?;
    }
    if let Some(p) = args.default_partitions {
        anyhow::ensure!(p > 0, "--default-partitions must be at least 1");
        config.defaults.partitions = p;
        config.kafka.default_partitions = Some(p);
    }

    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RILL_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rill")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // The handlers are installed here, before recovery and restore, so a SIGTERM during a
        // long start-up leads to a clean stop instead of killing the process outright (the
        // default action applies until a handler is registered).
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let shutdown = async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::info!("signal received");
        };
        let data_dir = config.data_dir.clone();
        rill_runtime::host::run(config, shutdown, |admin, kafka| {
            // One line that scripts and tests wait for.
            let kafka = kafka.map_or_else(|| "off".to_string(), |k| k.to_string());
            // A closed stdout must not stop the host (`println!` would panic here).
            let _ = outln!(
                "rill ready admin=http://{admin} kafka={kafka} data_dir={}",
                data_dir.display()
            );
        })
        .await
        .map_err(anyhow::Error::from)
    })?;
    Ok(())
}
