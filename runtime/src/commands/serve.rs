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
    /// Cluster mode: run deployments as consumer groups of the Kafka cluster at BOOTSTRAP
    /// (host:port[,host:port...]) instead of the embedded log; deployments are kept in the
    /// cluster and shared by every host attached to it. The Kafka listener is off. See
    /// docs/cluster.md.
    #[arg(long, env = "RILL_KAFKA_CLUSTER", value_name = "BOOTSTRAP")]
    kafka_cluster: Option<String>,
    /// A librdkafka property for every cluster client, KEY=VALUE (repeatable), e.g.
    /// security.protocol=SASL_SSL, sasl.mechanism=PLAIN, session.timeout.ms=10000.
    #[arg(long = "cluster-property", value_name = "KEY=VALUE")]
    cluster_properties: Vec<String>,
    /// Where this host's schema registry listens (Confluent's REST API; default
    /// 127.0.0.1:8081). Port 0 picks a free port.
    #[arg(long, env = "RILL_SCHEMA_REGISTRY_ADDR")]
    schema_registry_addr: Option<SocketAddr>,
    /// Do not serve a schema registry.
    #[arg(long, env = "RILL_NO_SCHEMA_REGISTRY")]
    no_schema_registry: bool,
    /// Use the schema registry at URL (Confluent's, Karapace, another Rill host) instead of
    /// serving one: for door validation, typed handlers and deploy checks. Cluster mode
    /// serves none, so hosts share the one given here.
    #[arg(long, env = "RILL_SCHEMA_REGISTRY_URL", value_name = "URL")]
    schema_registry_url: Option<String>,
    /// This host's id in the cluster, shown as the owner of its partitions (default:
    /// HOSTNAME:ADMIN_PORT).
    #[arg(long, env = "RILL_CLUSTER_HOST_ID")]
    cluster_host_id: Option<String>,
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
    if let Some(a) = args.schema_registry_addr {
        config.schema_registry.listen = a;
    }
    if args.no_schema_registry {
        config.schema_registry.enabled = false;
    }
    if let Some(u) = args.schema_registry_url {
        config.schema_registry.url = Some(u);
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

    if let Some(b) = args.kafka_cluster {
        config
            .cluster
            .get_or_insert_with(Default::default)
            .bootstrap = b;
    }
    if let Some(id) = args.cluster_host_id {
        config.cluster.get_or_insert_with(Default::default).host_id = Some(id);
    }
    for p in args.cluster_properties {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("invalid --cluster-property '{p}' (want KEY=VALUE)"))?;
        config
            .cluster
            .get_or_insert_with(Default::default)
            .properties
            .insert(k.trim().to_owned(), v.trim().to_owned());
    }
    if let Some(c) = &config.cluster {
        c.validate().map_err(anyhow::Error::msg)?;
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
        let cluster = config.cluster.clone();
        rill_runtime::host::run(config, shutdown, |l| {
            // One line that scripts and tests wait for.
            let admin = l.admin;
            let kafka = l.kafka.map_or_else(|| "off".to_string(), |k| k.to_string());
            let registry = match (l.schema_registry, &l.schema_registry_url) {
                (Some(a), _) => format!("http://{a}"),
                (None, Some(url)) => format!("external:{url}"),
                (None, None) => "off".to_string(),
            };
            let cluster = cluster.map_or_else(String::new, |c| {
                let id = rill_runtime::cluster::host_id(&c, admin);
                format!(" cluster={} host={id}", c.bootstrap)
            });
            // A closed stdout must not stop the host (`println!` would panic here).
            let _ = outln!(
                "rill ready admin=http://{admin} kafka={kafka} schema_registry={registry} data_dir={}{cluster}",
                data_dir.display()
            );
        })
        .await
        .map_err(anyhow::Error::from)
    })?;
    Ok(())
}
