//! `loyalty-bench`: a reproducible load benchmark of loyalty-bot in one process. It starts the
//! real service (through `Application::build`, as `main` and the tests do) on loopback with a
//! fresh store, loopback fakes for the shop and the Send API, and a bare actix-web handler as
//! the framework's ceiling; then drives each workload with a closed-loop load generator and
//! prints one table. `--smoke` is the short CI run that fails on any error.
//!
//! ```sh
//! cargo run --release --bin loyalty-bench -- [--seconds N] [--connections C] [--smoke]
//! ```

mod cli;
mod fakes;
mod load;
mod machine;
mod mail;
mod mail_probe;
mod manychat;
mod members;
mod messenger;
mod report;
mod segments;
mod service;
mod smtp_sink;

use anyhow::Context;
use cli::{Options, Workload};
use fakes::Fakes;
use load::{Measured, Plan, Scenario};
use report::Row;
use service::Service;
use std::process::ExitCode;
use std::sync::Arc;

/// sled allocates and frees a node copy per write; glibc's allocator showed up in the
/// profile (`_int_malloc`, `malloc_consolidate`), mimalloc keeps per-thread free lists.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Named, so that the harness's threads are told apart from the service's (which has a
    // runtime of its own); idle blocking threads are kept, so none exits mid-window.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name(machine::HARNESS_THREADS)
        .thread_keep_alive(std::time::Duration::from_secs(3600))
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(start()),
        Err(e) => {
            eprintln!("error: cannot start the bench's runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn start() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let probe = match args.first().map(String::as_str) {
        Some(members::PROBE_FLAG) => Some(members::probe_main(&args[1..]).await),
        Some(mail_probe::PROBE_FLAG) => Some(mail_probe::probe_main(&args[1..]).await),
        _ => None,
    };
    if let Some(probe) = probe {
        return match probe {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let options = match Options::parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    // Warnings and errors only: the service's per-request info lines would measure the terminal.
    loyalty_bot::telemetry::init_with_default("warn");
    match run(&options).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("smoke check FAILED: a workload had no throughput or had errors");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every workload; `Ok(false)` when `--smoke` finds a problem.
async fn run(options: &Options) -> anyhow::Result<bool> {
    println!("{}", machine::describe(options));
    println!("{}", service::store_setup()?);
    if options.mail_only() {
        return run_mail(options).await;
    }
    let dir = service::temp_dir()?;
    let filled = match options.members {
        Some(n) => match prefill(&dir, n) {
            Ok(f) => Some(f),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        },
        None => None,
    };
    let fakes = Fakes::start().await.context("start the loopback fakes")?;
    let service = Service::start(&fakes, dir).await?;
    let rows = workloads(options, &fakes, &service).await;
    // Stop (and delete the temp store) even when a workload failed.
    let stopped = service.stop().await;
    fakes.stop().await;
    let (rows, segment) = rows?;
    stopped?;
    report::print(&rows, options);
    if let Some(f) = &filled {
        report::print_members(f);
    }
    if let Some(s) = &segment {
        report::print_segment(s, filled.as_ref().map(|f| f.members));
    }
    let segment_ok = segment.iter().flatten().all(|r| r.rows > 0);
    let mail_ok = if options.runs(Workload::Mail) {
        run_mail(options).await?
    } else {
        true
    };
    Ok(!options.smoke || (report::smoke_ok(&rows) && segment_ok && mail_ok))
}

/// The member-email row, on a store of its own (`--members N`, or [`mail::DEFAULT_MEMBERS`]);
/// `Ok(false)` when `--smoke` finds a problem.
async fn run_mail(options: &Options) -> anyhow::Result<bool> {
    let members = options.members.unwrap_or(mail::DEFAULT_MEMBERS);
    let figures = mail::run(members).await?;
    report::print_mail(&figures);
    Ok(!options.smoke || mail::smoke_ok(&figures))
}

/// Cold starts measured per `--members` run after the graceful stop (each reads the snapshot
/// the stop wrote).
const PROBES: usize = 3;

/// `--members N`: fills the store the service will start on, then measures it on disk and in
/// a freshly started process (cold page cache when it can be emptied): first on a copy of the
/// store as a `kill -9` right after the fill leaves it, then after a graceful stop.
fn prefill(dir: &std::path::Path, n: u64) -> anyhow::Result<members::Figures> {
    let db = service::db_path(dir);
    eprintln!("filling the store with {n} members ...");
    let (fill, store) = members::fill(&db, n, 64 << 20)?;
    let disk_bytes = members::disk_bytes(&db).context("measure the store")?;
    // Every write is flushed and none comes after: the files as they are now are what a
    // `kill -9` leaves.
    let crashed = dir.join("crashed");
    members::copy_dir(&db, &crashed).context("copy the store as a crash leaves it")?;
    eprintln!("stopping the store gracefully (close, then sled's snapshot) ...");
    let stopping = std::time::Instant::now();
    let closed = store.close().context("close the filled store")?;
    let stop_ms = match closed.write_snapshot() {
        Ok(_) => Some(stopping.elapsed().as_secs_f64() * 1e3),
        Err(e) => {
            eprintln!(
                "warning: the stop's snapshot failed ({e}); the starts after it recover the log"
            );
            None
        }
    };
    let probe = |path: &std::path::Path, what: &str| -> anyhow::Result<members::Probe> {
        // Let the disk finish the last write-back first, or the start measures that instead.
        rustix::fs::sync();
        std::thread::sleep(std::time::Duration::from_secs(2));
        let cold = members::evict(path);
        eprintln!(
            "starting the service on it in a new process, {what} (cold page cache: {cold}) ..."
        );
        let probe = members::probe_in_child(path, n, cold)?;
        eprintln!("  started in {:.0} ms", probe.open_ms);
        Ok(probe)
    };
    let after_crash = probe(&crashed, "after a crash");
    let _ = std::fs::remove_dir_all(&crashed);
    let after_crash = after_crash?;
    let mut after_stop = Vec::new();
    for round in 1..=PROBES {
        let what = format!("after the graceful stop, {round}/{PROBES}");
        after_stop.push(probe(&db, &what)?);
    }
    let starts = members::Starts::of(after_crash, after_stop).context("no start was measured")?;
    Ok(members::Figures {
        members: n,
        fill,
        disk_bytes,
        stop_ms,
        starts,
    })
}

/// Runs the workloads in an order that keeps background work from leaking into the next one
/// (intake leaves a backlog for the Messenger worker, so it runs last), and returns them in
/// table order. The held intake runs first, on the store the run started with (fresh, or the
/// `--members` one), as the other rows do. It drains its own backlog before the next row; run
/// after the claim rows, it measured what they left in the store as well (`docs/benchmark.md`,
/// Method: the workloads).
/// The segment export follows it, with no background work left, and is reported apart.
async fn workloads(
    options: &Options,
    fakes: &Fakes,
    service: &Service,
) -> anyhow::Result<(Vec<Row>, Option<Vec<segments::Round>>)> {
    let plan = options.plan();
    let bare = measure(
        "bare ceiling",
        fakes.bare_addr,
        plan,
        Arc::new(messenger::Intake::bare()),
    )
    .await;
    let held = if options.runs(Workload::Held) {
        Some(messenger::run_held_intake(options, fakes, service).await?)
    } else {
        None
    };
    let segment = if options.runs(Workload::Segments) {
        Some(segments::run(service, options.members.is_some()).await?)
    } else {
        None
    };
    let manychat = manychat::run(options, service).await?;
    let e2e = if options.runs(Workload::EndToEnd) {
        Some(messenger::run_claims(options, fakes, service).await?)
    } else {
        None
    };
    let intake = if options.runs(Workload::Intake) {
        Some(messenger::run_intake(options, fakes, service).await)
    } else {
        None
    };
    let mut rows = vec![Row::new("bare actix-web: read body, 200", bare)];
    rows.extend(held);
    rows.extend(intake);
    rows.extend(e2e.into_iter().flatten());
    rows.extend(manychat);
    Ok((rows, segment))
}

/// One workload against the service, with its flushes counted.
pub async fn measure_service(
    name: &str,
    service: &Service,
    plan: Plan,
    scenario: Arc<dyn Scenario>,
) -> Measured {
    let program = service.program();
    let before = program.flush_stats();
    let mut measured = measure(name, service.addr, plan, scenario).await;
    measured.flushes = program
        .flush_stats()
        .zip(before)
        .map(|(after, before)| after.since(&before));
    measured
}

/// One workload against `addr`, with progress on stderr.
pub async fn measure(
    name: &str,
    addr: std::net::SocketAddr,
    plan: Plan,
    scenario: Arc<dyn Scenario>,
) -> Measured {
    eprintln!("running {name} ...");
    let measured = load::run(addr, plan, scenario).await;
    eprintln!(
        "  {:.0} req/s, {} completed, {} errors",
        measured.rate(),
        measured.completed(),
        measured.errors.total()
    );
    measured
}

/// Set-up helper: runs `f(0..n)`, `concurrency` at a time; the first error wins.
pub async fn each<F, Fut>(n: usize, concurrency: usize, f: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let mut tasks = tokio::task::JoinSet::new();
    for first in 0..concurrency.min(n) {
        let f = f.clone();
        tasks.spawn(async move {
            for i in (first..n).step_by(concurrency) {
                f(i).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a set-up task panicked")??;
    }
    Ok(())
}
