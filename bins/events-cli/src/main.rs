//! `events`: the command line of the event platform (brief §12).
//!
//! Thin glue over the daemon's HTTP API (brief §9) plus two things that work without a
//! daemon: `events catalog list` (the catalog is compiled in, see `events-envelope`) and
//! `events emit --redis-url` (through `events-producer`'s `RedisProducer`).
//!
//! Errors are one line on stderr that says what to do; the exit status tells scripts whose
//! fault it was: 0 ok, 1 the daemon failed or could not be reached, 2 usage or bad input.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

mod cli;
mod client;
mod commands;
mod failure;
mod output;

use cli::{CatalogCommand, Cli, Command};
use client::Client;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) if failure::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(failure::exit_code_of(&err))
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    // clap prints usage errors itself and exits 2.
    let Cli {
        url,
        token,
        json,
        command,
    } = Cli::parse();
    // Only commands that talk to the daemon need a valid --url; `catalog list` must work
    // whatever EVENTS_URL holds.
    let connect = || Client::new(&url, token.clone());
    let mut out = std::io::stdout().lock();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match command {
            Command::Catalog(CatalogCommand::List { catalog_dir }) => {
                commands::catalog::list(catalog_dir.as_deref(), json, &mut out)
            }
            Command::Emit(args) => commands::emit::run(&connect()?, args, json, &mut out).await,
            Command::Tail(args) => commands::tail::run(&connect()?, args, json, &mut out).await,
            Command::Notifications(command) => {
                commands::notifications::run(&connect()?, command, json, &mut out).await
            }
            Command::DeadLetters(command) => {
                commands::dead_letters::run(&connect()?, command, json, &mut out).await
            }
            Command::Webhooks(command) => {
                commands::webhooks::run(&connect()?, command, json, &mut out).await
            }
        }
    })?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
