//! What the figures were measured on: CPUs, CPU model, kernel, date and the run's parameters.

use crate::cli::Options;

pub fn describe(options: &Options) -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| format!("Linux {}", k.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.to_owned());
    let plan = options.plan();
    format!(
        "loyalty-bench {version}{smoke}\n\
         machine: {cpus} CPUs (nproc), {model}, {kernel}\n\
         date:    {date}\n\
         load:    {c} closed-loop keep-alive connections per workload, {w:.1} s warm-up + {s} s measured;\n\
         \x20        load generator, fakes and service share this machine's CPUs",
        version = env!("CARGO_PKG_VERSION"),
        smoke = if options.smoke { " (smoke run)" } else { "" },
        date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        c = plan.clients,
        w = plan.warmup.as_secs_f64(),
        s = options.seconds,
    )
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`; `None`
/// where that is not readable. Per-request CPU is steadier than req/s on a shared machine:
/// other tenants take wall time from us, not our cycles.
pub fn process_cpu() -> Option<std::time::Duration> {
    cpu_of(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// The name of the bench's own runtime's threads: the load generator and the fakes run there.
pub const HARNESS_THREADS: &str = "bench-rt";

/// CPU time the harness has used so far: the bench's runtime's threads ([`HARNESS_THREADS`],
/// kept alive for the whole run) and the main thread, from `/proc/self/task/*/stat`, counted
/// as [`process_cpu`] counts. Every other thread serves requests: the service's runtime, its
/// actix workers, sled's threads and the group commit's (and the bare ceiling's actix
/// workers, idle outside their own rows), so the difference of the two is the server's,
/// including its threads that have exited since.
pub fn harness_cpu() -> Option<std::time::Duration> {
    let main = std::process::id().to_string();
    let mut total = std::time::Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let task = task.ok()?;
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // exited meanwhile
        };
        let name = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')'));
        let harness = name.is_some_and(|(name, _)| name.starts_with(HARNESS_THREADS));
        if harness || task.file_name().to_str() == Some(main.as_str()) {
            total += cpu_of(&stat)?;
        }
    }
    Some(total)
}

/// utime + stime of a `stat` line (a process's or a thread's).
fn cpu_of(stat: &str) -> Option<std::time::Duration> {
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // utime and stime are fields 14 and 15, in USER_HZ ticks (100 per second on Linux).
    let total = ticks(11)? + ticks(12)?;
    Some(std::time::Duration::from_millis(total * 10))
}
