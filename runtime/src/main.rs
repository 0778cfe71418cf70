//! `runtime`: the Rill host and its command line.
//!
//! This file only parses arguments and hands each subcommand to its file in `commands/`.
//! Errors come back as `anyhow` chains and are printed on one line with a non-zero exit.

mod commands;

use clap::Parser;

fn main() {
    let cli = commands::Cli::parse();
    if let Err(e) = commands::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
