//! One file per subcommand. Commands other than `serve`, `new`, `build` and `test` are
//! clients of a running host's admin API.

/// `println!` that returns an error instead of panicking when stdout fails. A closed pipe
/// (`runtime consume t | head -3`) becomes [`StdoutClosed`], which `main` turns into a quiet
/// exit with status 0, as cat and ripgrep do; `println!` panicked ("failed printing to
/// stdout: Broken pipe", status 101).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err($crate::commands::stdout_error)
    }};
}

mod build;
mod consume;
mod deploy;
mod deployments;
mod new;
mod produce;
mod schema;
mod serve;
mod state;
mod status;
mod test;
mod topic;

use clap::{Parser, Subcommand};

/// Stdout was closed by its reader (EPIPE): the command ends quietly with status 0.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Wraps a failed write to stdout: a broken pipe as [`StdoutClosed`], anything else with
/// context.
pub(crate) fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(e).context("writing to stdout")
    }
}

use rill_runtime::admin::client::Client;

/// Rill: a partitioned event log with WebAssembly consumers, in one process.
///
/// Start a host with `runtime serve`, create a topic, deploy a handler, produce records.
/// Every command but serve/new/build/test talks to a running host's admin API.
#[derive(Parser, Debug)]
#[command(
    name = "runtime",
    version,
    about,
    long_about = None,
    after_help = "Not there yet: replication, authentication and TLS (both doors listen on \
                  loopback), replay (deploy --reset) in cluster mode, state larger than memory, \
                  compaction of compressed batches, WASI capabilities for handlers, an SDK for \
                  languages other than Rust. See README.md."
)]
pub struct Cli {
    /// The admin API of the host to talk to.
    #[arg(
        long,
        global = true,
        env = "RILL_ADMIN",
        default_value = "http://127.0.0.1:8080"
    )]
    admin: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a host: the log, the deployed handlers, the admin API and the Kafka listener.
    Serve(serve::ServeArgs),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Append records, one per line, from stdin or a file.
    Produce(produce::ProduceArgs),
    /// Print records from a topic.
    Consume(consume::ConsumeArgs),
    /// Deploy a Wasm handler on a topic as a consumer group.
    ///
    /// Deploying again under an existing name is a redeploy: it replaces the module, keeps
    /// the group's offsets, and every option not given keeps the deployment's current value
    /// (group, start, outputs, env, limits, retries, batching, pause state). A redeploy
    /// restarts partitions that had stopped on a failure.
    Deploy(deploy::DeployArgs),
    /// List deployments with their state, offsets and lag.
    List(deployments::ListArgs),
    /// Remove a deployment (its committed offsets stay unless --drop-offsets).
    Undeploy(deployments::UndeployArgs),
    /// Stop invoking a deployment; offsets are kept.
    Pause(deployments::NameArg),
    /// Resume a paused or failed deployment.
    Resume(deployments::NameArg),
    /// List every consumer group (deployments' and Kafka consumers') with its lag.
    Groups,
    /// Show a deployment's handler logs.
    Logs(deployments::LogsArgs),
    /// Query a deployment's durable state (what its handler keeps with ctx.state()).
    #[command(subcommand)]
    State(state::StateCommand),
    /// Register, list, show, check and delete schemas in a schema registry (the host's own
    /// by default, `--registry` or RILL_SCHEMA_REGISTRY for another).
    Schema(schema::SchemaArgs),
    /// Show the host's health: topics, deployments, recovery findings.
    Status,
    /// Scaffold a new handler crate.
    New(new::NewArgs),
    /// Compile a handler crate to .wasm.
    Build(build::BuildArgs),
    /// Run a handler locally over records from a file, with no host.
    Test(test::TestArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let client = || Client::new(&cli.admin);
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Topic(cmd) => topic::run(&client(), cmd),
        Command::Produce(args) => produce::run(&client(), args),
        Command::Consume(args) => consume::run(&client(), args),
        Command::Deploy(args) => deploy::run(&client(), args),
        Command::List(args) => deployments::list(&client(), args),
        Command::Undeploy(args) => deployments::undeploy(&client(), args),
        Command::Pause(args) => deployments::pause(&client(), args, true),
        Command::Resume(args) => deployments::pause(&client(), args, false),
        Command::Logs(args) => deployments::logs(&client(), args),
        Command::State(cmd) => state::run(&client(), cmd),
        Command::Groups => deployments::groups(&client()),
        Command::Status => status::run(&client()),
        Command::Schema(args) => schema::run(args),
        Command::New(args) => new::run(args),
        Command::Build(args) => build::run(args),
        Command::Test(args) => test::run(args),
    }
}
