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

/// Names (as the kernel keeps them: 15 bytes at most) of the threads that serve requests: the
/// service's runtime (`crate::service::RUNTIME_THREADS`), its actix workers and sled's and the
/// group commit's threads. The bare ceiling's actix workers match too, and idle outside its
/// own rows. Everything else is the harness: the load generator and the fakes, on the bench's
/// own runtime.
const SERVER_THREADS: [&str; 3] = ["service-rt", "actix", "sled"];

/// CPU time the harness's threads (every live thread not in [`SERVER_THREADS`]) have used so
/// far, from `/proc/self/task/*/stat`, counted as [`process_cpu`] counts; so the difference of
/// the two is the server's, including threads that have exited since.
pub fn harness_cpu() -> Option<std::time::Duration> {
    let mut total = std::time::Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue; // exited meanwhile
        };
        let name = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')'));
        if name.is_some_and(|(name, _)| !SERVER_THREADS.iter().any(|p| name.starts_with(p))) {
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
