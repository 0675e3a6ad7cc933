//! What each subcommand of the binary does, once [`crate::cli`] has parsed it. The top of the
//! program: errors are `anyhow` here, printed on one line by `main`.

mod statements;

use crate::cli::{Cli, Command, MembersArgs};
use crate::config::{render, ConfigError, Layered, Settings};
use crate::domain::SegmentFilter;
use crate::imports::{import_balances as import_balances_from, ImportError};
use crate::progress::Progress;
use crate::segments::{write_segment, SegmentFormat};
use crate::startup::{open_store, Application};
use crate::store::SledStore;
use anyhow::Context;
use chrono::Utc;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = cli.config_file();
    let command = cli.command.unwrap_or(crate::cli::Command::Serve);
    if let Command::CheckConfig = command {
        return Ok(check_config(file.as_deref()));
    }
    let settings = Settings::load(file.as_deref(), std::env::vars())?;
    // Only the service logs at info by default: the terminal chat and the offline commands
    // print what they did themselves, and their logs would interleave with it.
    let quiet = !matches!(command, Command::Serve);
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
        Command::Export { out } => export(&settings, &out).await?,
        Command::Import { file } => import(&settings, &file).await?,
        Command::Members(args) => members(&settings, &args).await?,
        Command::Statements(args) => statements::run(&settings, &args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `work` on the stopped store (on a blocking thread: store calls wait for their flush),
/// then closes it so that everything written is on disk.
async fn with_stopped_store<T: Send + 'static>(
    settings: &Settings,
    work: impl FnOnce(&SledStore) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let store = open_store(settings)?;
    tokio::task::spawn_blocking(move || {
        let result = work(&store);
        let closed = store.close().context("closing the store");
        let value = result?;
        closed?;
        Ok(value)
    })
    .await?
}

/// `members [filters] [--csv]`: a segment of a stopped store, streamed to standard output.
async fn members(settings: &Settings, args: &MembersArgs) -> anyhow::Result<()> {
    let pairs = args.query_pairs();
    let filter = SegmentFilter::parse(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &settings.catalogue(),
        Utc::now(),
    )?;
    let format = if args.csv {
        SegmentFormat::Csv
    } else if std::io::stdout().is_terminal() {
        SegmentFormat::Table
    } else {
        SegmentFormat::JsonLines
    };
    let written = with_stopped_store(settings, move |store| {
        let bar = Progress::new("members listed");
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let written = write_segment(store, &filter, format, &mut out, &mut |n| bar.set(n));
        bar.finish();
        let written = written?;
        out.flush()?;
        Ok(written)
    })
    .await?;
    eprintln!("{written} members");
    Ok(())
}

/// `export --out F`: the whole store in the export format, written to a temporary file beside
/// `F` and renamed once complete, so `F` is never a cut-off export (`-`: standard output).
async fn export(settings: &Settings, out: &Path) -> anyhow::Result<()> {
    let out = out.to_path_buf();
    let summary = with_stopped_store(settings, move |store| {
        let bar = Progress::new("records exported");
        let mut progress = |n| bar.set(n);
        let summary = if out == Path::new("-") {
            let stdout = std::io::stdout();
            crate::backup::export(store, &mut stdout.lock(), &mut progress)?
        } else {
            let name = out.file_name().context("--out names no file")?;
            let partial = out.with_file_name(format!(".{}.partial", name.to_string_lossy()));
            let mut file = std::fs::File::create(&partial)
                .with_context(|| format!("cannot create {}", partial.display()))?;
            let summary = crate::backup::export(store, &mut file, &mut progress)?;
            file.sync_all()?;
            std::fs::rename(&partial, &out).with_context(|| {
                format!("cannot rename {} to {}", partial.display(), out.display())
            })?;
            summary
        };
        bar.finish();
        Ok(summary)
    })
    .await?;
    let c = summary.counts;
    eprintln!(
        "exported {} members ({} ledger entries), {} orders, {} coupons, {} imported balances, {} bytes",
        c.members, c.ledger_entries, c.orders, c.coupons, c.imported_balances, summary.bytes
    );
    Ok(())
}

/// `import F`: an export loaded into an empty store, all or nothing.
async fn import(settings: &Settings, file: &Path) -> anyhow::Result<()> {
    let reader =
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let cache = settings.store.cache_capacity_mb * 1024 * 1024;
    let path = settings.store.path.clone();
    let store = SledStore::open_for_restore(&path, cache).with_context(|| {
        format!(
            "cannot open the store at {} (stop the service first)",
            path.display()
        )
    })?;
    let summary = tokio::task::spawn_blocking(move || {
        let bar = Progress::new("records imported");
        let mut input = std::io::BufReader::new(reader);
        let result = crate::backup::import(&store, &mut input, &mut |n| bar.set(n));
        bar.finish();
        let closed = store.close().context("closing the store");
        let summary = result?;
        if let Err(e) = closed?.write_snapshot() {
            tracing::warn!(error = %e, "the store's snapshot was not written; the next start recovers its log");
        }
        anyhow::Ok(summary)
    })
    .await??;
    let c = summary.counts;
    eprintln!(
        "imported {} members ({} ledger entries), {} orders, {} coupons, {} imported balances",
        c.members, c.ledger_entries, c.orders, c.coupons, c.imported_balances
    );
    Ok(())
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
