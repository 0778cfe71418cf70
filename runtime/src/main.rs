//! `runtime`: the Rill host and its command line.
//!
//! This file only parses arguments and hands each subcommand to its file in `commands/`.
//! Errors come back as `anyhow` chains and are printed on one line with a non-zero exit.

mod commands;

use clap::Parser;

/// The Kafka listener decodes frames from the network; this allocator keeps a wire-chosen
/// array capacity from aborting the host (see `rill_kafka::WireSafeAlloc`).
#[global_allocator]
static ALLOC: rill_kafka::WireSafeAlloc = rill_kafka::WireSafeAlloc;

fn main() {
    let cli = commands::Cli::parse();
    if let Err(e) = commands::run(cli) {
        if e.downcast_ref::<commands::StdoutClosed>().is_some() {
            // The reader has what it wanted (`| head`): not an error.
            return;
        }
        // One line, whatever the messages in the chain hold.
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}
