//! The `loyalty-bot` binary: parses the command line, loads the settings and hands over to the
//! library (`startup` for `serve`, `chat` for the terminal conversation).

use anyhow::Context;
use loyalty_bot::cli::{Command, USAGE};
use loyalty_bot::config::Settings;
use loyalty_bot::startup::Application;
use std::io::Write;
use std::process::ExitCode;

/// sled allocates and frees a node copy per write; glibc's allocator showed up in the
/// profile (`_int_malloc`, `malloc_consolidate`), mimalloc keeps per-thread free lists.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let command = match Command::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Help => {
            // `loyalty-bot --help | head` closes the pipe early; that is not an error.
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            Ok(())
        }
        Command::Serve { config } => {
            let settings = Settings::load(&config, std::env::vars())?;
            loyalty_bot::telemetry::init_with(&settings.log, "info");
            let app = Application::build(settings)
                .await
                .context("start-up failed")?;
            app.run_until_stopped().await?;
            Ok(())
        }
        Command::Chat { config, id } => {
            let settings = Settings::load(&config, std::env::vars())?;
            // Quiet by default, so logs do not interleave with the conversation.
            loyalty_bot::telemetry::init_with(&settings.log, "warn");
            loyalty_bot::chat::run(settings, &id).await?;
            Ok(())
        }
    }
}

/// The cause chain on one line ("start-up failed: cannot open the store: lock held"), leaving
/// out causes whose text the message before already includes.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}
