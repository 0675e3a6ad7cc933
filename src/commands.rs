//! What each subcommand of the binary does, once [`crate::cli`] has parsed it. The top of the
//! program: errors are `anyhow` here, printed on one line by `main`.

use crate::cli::{Cli, Command};
use crate::config::{render, ConfigError, Layered, Settings};
use crate::startup::Application;
use anyhow::Context;
use std::io::Write;
use std::process::ExitCode;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = cli.config_file();
    let command = cli.command.unwrap_or(crate::cli::Command::Serve);
    if let Command::CheckConfig = command {
        return Ok(check_config(file.as_deref()));
    }
    let settings = Settings::load(file.as_deref(), std::env::vars())?;
    let quiet = matches!(command, Command::Chat { .. });
    crate::telemetry::init_with_default(if quiet { "warn" } else { "info" });
    match command {
        Command::Serve => {
            let app = Application::build(settings)
                .await
                .context("start-up failed")?;
            app.run_until_stopped().await?;
        }
        Command::Chat { id } => crate::chat::run(settings, &id).await?,
        Command::CheckConfig => unreachable!("answered above"),
        Command::Members(_)
        | Command::Export { .. }
        | Command::Import { .. }
        | Command::ImportBalances { .. } => {
            anyhow::bail!("this command is not wired into this build yet")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the effective configuration with each value's layer to stdout; a mistake goes to
/// stderr. 0 if the configuration is valid, 1 if not.
fn check_config(file: Option<&std::path::Path>) -> ExitCode {
    let layered = match Layered::load(file, std::env::vars()) {
        Ok(layered) => layered,
        Err(e) => return invalid(&e),
    };
    // `check-config | head` closes the pipe early; that is not an error.
    let _ = std::io::stdout().write_all(render(&layered).as_bytes());
    match Settings::from_layered(&layered) {
        Ok(_) => {
            let from = file.map_or("no config file".into(), |f| f.display().to_string());
            eprintln!("configuration is valid ({from})");
            ExitCode::SUCCESS
        }
        Err(e) => invalid(&e),
    }
}

fn invalid(e: &ConfigError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

/// The cause chain on one line ("start-up failed: cannot open the store: lock held"), leaving
/// out causes whose text the message before already includes.
pub fn one_line(e: &anyhow::Error) -> String {
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
