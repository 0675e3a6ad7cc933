//! What each subcommand of the binary does, once [`crate::cli`] has parsed it. The top of the
//! program: errors are `anyhow` here, printed on one line by `main`.

use crate::cli::{Cli, Command};
use crate::config::{render, ConfigError, Layered, Settings};
use crate::imports::{import_balances as import_balances_from, ImportError};
use crate::progress::Progress;
use crate::startup::{open_store, Application};
use crate::store::SledStore;
use anyhow::Context;
use chrono::Utc;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = cli.config_file();
    let command = cli.command.unwrap_or(crate::cli::Command::Serve);
    if let Command::CheckConfig = command {
        return Ok(check_config(file.as_deref()));
    }
    let settings = Settings::load(file.as_deref(), std::env::vars())?;
    // Quiet by default in the terminal chat, so logs do not interleave with the conversation.
    let quiet = matches!(command, Command::Chat { .. });
    crate::telemetry::init_with(&settings.log, if quiet { "warn" } else { "info" });
    match command {
        Command::Serve => {
            let app = Application::build(settings)
                .await
                .context("start-up failed")?;
            app.run_until_stopped().await?;
        }
        Command::Chat { id } => crate::chat::run(settings, &id).await?,
        Command::CheckConfig => unreachable!("answered above"),
        Command::ImportBalances { file } => return import_balances(&settings, &file).await,
        Command::Members(_) | Command::Export { .. } | Command::Import { .. } => {
            anyhow::bail!("this command is not wired into this build yet")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `work` on the stopped store (on a blocking thread: store calls wait for their flush),
/// then closes it so that everything written is on disk.
async fn with_stopped_store<T: Send + 'static>(
    settings: &Settings,
    work: impl FnOnce(&SledStore) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let store = open_store(settings).context("the service must be stopped first")?;
    tokio::task::spawn_blocking(move || {
        let result = work(&store);
        let closed = store.close().context("closing the store");
        let value = result?;
        closed?;
        Ok(value)
    })
    .await?
}

/// `import-balances FILE.csv`: every row checked first; any invalid row is listed and nothing
/// is written (exit 1).
async fn import_balances(settings: &Settings, file: &Path) -> anyhow::Result<ExitCode> {
    let reader =
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let outcome = with_stopped_store(settings, move |store| {
        let bar = Progress::new("rows imported");
        let result = import_balances_from(store, reader, Utc::now(), &mut |n| bar.set(n));
        bar.finish();
        Ok(result)
    })
    .await?;
    match outcome {
        Ok(report) => {
            println!(
                "{} rows: {} waiting for their email to join, {} credited to existing members, {} imported before (skipped)",
                report.rows, report.waiting, report.credited, report.already_imported
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(ImportError::InvalidRows { rows, errors }) => {
            for e in &errors {
                eprintln!("{}: {e}", file.display());
            }
            eprintln!(
                "error: {} problem(s) in {rows} rows; nothing was imported",
                errors.len()
            );
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
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
