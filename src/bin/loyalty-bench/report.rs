//! The result table (Markdown, so it pastes into docs as is), its notes, and the smoke check.

use crate::cli::Options;
use crate::load::Measured;
use std::time::Duration;

/// One workload's line in the table.
pub struct Row {
    pub name: String,
    pub measured: Measured,
    /// The ceiling this row's ratio refers to, when it was measured alongside the row rather
    /// than the first row's.
    pub ceiling: Option<f64>,
    notes: Vec<String>,
}

impl Row {
    pub fn new(name: impl Into<String>, measured: Measured) -> Row {
        Row {
            name: name.into(),
            measured,
            ceiling: None,
            notes: Vec::new(),
        }
    }

    pub fn note(&mut self, text: String) {
        self.notes.push(text);
    }
}

/// Prints the table; the first row is the bare ceiling every ratio refers to, except a row's
/// own (marked with a *).
pub fn print(rows: &[Row], options: &Options) {
    let first = rows.first().map_or(0.0, |r| r.measured.rate());
    println!();
    println!("| workload | req/s | ratio to bare | p50 | p95 | p99 | CPU µs/req | server CPU µs/req | non-2xx | transport | wrong answer |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in rows {
        let m = &row.measured;
        let (ceiling, mark) = row.ceiling.map_or((first, ""), |c| (c, "*"));
        let ratio = if ceiling > 0.0 {
            format!("{:.2}{mark}", m.rate() / ceiling)
        } else {
            "–".into()
        };
        println!(
            "| {} | {:.0} | {ratio} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.name,
            m.rate(),
            ms(m.percentile(0.50)),
            ms(m.percentile(0.95)),
            ms(m.percentile(0.99)),
            m.cpu_per_request_us()
                .map_or_else(|| "–".into(), |us| format!("{us:.0}")),
            m.server_cpu_per_request_us()
                .map_or_else(|| "–".into(), |us| format!("{us:.0}")),
            m.errors.non_2xx,
            m.errors.transport,
            m.errors.wrong,
        );
    }
    println!();
    println!(
        "{} connections; latencies in ms over the requests completed in the {} s window; CPU \
         µs/req is the whole process's (service, fakes, load generator) CPU time in the window \
         per completed request; server CPU µs/req is the part of it used by the threads that \
         serve the requests (the service's runtime, actix workers and store threads; in the \
         bare row, the bare handler's), the rest being the load generator's and the fakes'.",
        options.connections, options.seconds
    );
    if rows.iter().any(|r| r.ceiling.is_some()) {
        println!(
            "A ratio marked * is against the bare ceiling measured in rounds alternating with \
             that row's (see its note), so that the VM's drift between workloads stays out of it."
        );
    }
    if let Some(rate) = options.rate {
        println!(
            "Rows marked \"paced\" ran open loop at {rate:.0} requests/s offered over the same \
             connections; their latency counts from each request's scheduled send time."
        );
    }
    for note in rows.iter().flat_map(|r| &r.notes) {
        println!("- {note}");
    }
    if options.rate.is_some() {
        println!();
        println!("p99 in ms of the requests sent in each 250 ms of a paced row's window (a stall shows as a run, a periodic one as a pattern):");
        for row in rows.iter().filter(|r| r.name.contains("paced")) {
            let slices = row.measured.p99_by_slice(Duration::from_millis(250));
            let text: Vec<String> = slices.iter().map(|ms| format!("{ms:.0}")).collect();
            println!("- {}: {}", row.name, text.join(" "));
        }
    }
    println!();
    println!("Group-commit flushes during each workload (warm-up included); a slow one holds every answer waiting on it:");
    for row in rows {
        if let Some(f) = &row.measured.flushes {
            println!(
                "- {}: {} flushes; ≥ 10 ms: {}, ≥ 20 ms: {}, ≥ 50 ms: {}, ≥ 100 ms: {}",
                row.name,
                f.total(),
                f.at_least(10),
                f.at_least(20),
                f.at_least(50),
                f.at_least(100)
            );
        }
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "–".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
}

/// Every workload completed requests, and none failed.
pub fn smoke_ok(rows: &[Row]) -> bool {
    let mut ok = true;
    for row in rows {
        let m = &row.measured;
        if m.completed() == 0 || m.errors.total() > 0 {
            eprintln!(
                "smoke: {}: {} completed, errors {:?}",
                row.name,
                m.completed(),
                m.errors
            );
            ok = false;
        }
    }
    ok
}

/// The `--members` figures.
pub fn print_members(f: &crate::members::Figures) {
    let s = &f.starts;
    let p = &s.peak;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let page_cache = |cold: bool| {
        if cold {
            "cold"
        } else {
            "warm: could not empty the"
        }
    };
    println!();
    println!("| store with {} members | value |", f.members);
    println!("| --- | ---: |");
    println!(
        "| filled in (store `join`, all CPUs) | {:.1} s |",
        f.fill.as_secs_f64()
    );
    println!(
        "| on disk after the fill | {:.1} MiB ({:.0} bytes per member) |",
        f.disk_bytes as f64 / (1024.0 * 1024.0),
        f.disk_bytes as f64 / f.members.max(1) as f64
    );
    match f.stop_ms {
        Some(ms) => {
            println!("| graceful stop after the fill (close, then sled's snapshot) | {ms:.0} ms |")
        }
        None => println!(
            "| graceful stop after the fill (close, then sled's snapshot) | snapshot failed |"
        ),
    }
    let later: Vec<String> = s
        .after_stop_ms
        .iter()
        .skip(1)
        .map(|ms| format!("{ms:.0}"))
        .collect();
    println!(
        "| service start on it, first after the stop ({} page cache; reads the stop's snapshot) | {:.0} ms |",
        page_cache(s.after_stop_cold),
        s.first_after_stop_ms(),
    );
    println!(
        "| the {} starts after it | {} ms |",
        later.len(),
        later.join(", ")
    );
    println!(
        "| service start after a crash (`kill -9`) at the end of the fill ({} page cache; recovers the whole log) | {:.0} ms |",
        page_cache(s.after_crash.cold),
        s.after_crash.open_ms,
    );
    println!(
        "| RSS after start (the start that peaked highest) | {:.0} MiB |",
        mib(p.rss_open_kib)
    );
    println!(
        "| its peak RSS after {} lookups by email (p50 {:.0} µs) | {:.0} MiB |",
        p.lookups,
        p.lookup_us_p50,
        mib(p.rss_peak_kib)
    );
}

fn us(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |us| format!("{us:.2}"))
}

/// The segment exports' figures, in order; `members`: the `--members` fill, when there was one.
pub fn print_segment(rounds: &[crate::segments::Round], members: Option<u64>) {
    let Some(first) = rounds.first() else {
        return;
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    let of = members.map_or_else(String::new, |n| format!(" of {n}"));
    println!();
    println!(
        "Segment export: `GET /admin/members?format=csv&{}`, read to the end by a streaming \
         client, {} times in a row. Bars: ≥ 250,000 rows/s; peak RSS < 100 MiB above the idle \
         service. The first export after the start also fills sled's page cache \
         (`store.cache_capacity_mb`).",
        crate::segments::RANGE,
        rounds.len()
    );
    println!();
    println!("| export | rows | to the last byte | **rows/s** | CPU µs/row | server CPU µs/row | RSS before → peak | **peak above the idle before it** | peak above the idle before the first |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "| {} | {}{of} | {:.2} s ({:.1} MiB) | **{:.0}** | {} | {} | {:.0} → {:.0} MiB{} | **{:.1} MiB** | {:.1} MiB |",
            i + 1,
            r.rows,
            r.elapsed.as_secs_f64(),
            r.bytes as f64 / (1024.0 * 1024.0),
            r.rows_per_sec(),
            us(r.us_per_row(r.cpu)),
            us(r.us_per_row(r.server_cpu)),
            mib(r.idle_rss_kib),
            mib(r.peak_rss_kib),
            if r.exact { "" } else { " (sampled)" },
            r.above_mib(r.idle_rss_kib),
            r.above_mib(first.idle_rss_kib),
        );
    }
}

/// The member-email row's figures.
pub fn print_mail(f: &crate::mail::Figures) {
    let p = &f.probe;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let met = |yes: bool| if yes { "yes" } else { "**no**" };
    let peak_mib = mib(p.rss_peak_kib);
    println!();
    println!(
        "Member email: a store of {} members who joined spread over 28 days, the clock one day \
         into the second period, so {} ({:.2}%) have a statement due. A new process (the mail \
         service alone: `Services` and the scheduler, no HTTP server) starts on it after a \
         graceful stop, page cache emptied. Bars: the due set in < 1 s without reading every \
         member; ≥ 2,000 statements rendered/s; ≥ 300 delivered/s; peak RSS < 300 MiB.",
        f.members,
        p.due,
        p.due as f64 * 100.0 / f.members.max(1) as f64
    );
    println!();
    println!("| step | figure | bar | met |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| fill (store `join`, all CPUs; not counted) | {:.1} s | – | – |",
        f.fill.as_secs_f64()
    );
    println!(
        "| the one-time statement backfill on it (walks every member, schedules none; before the stop) | {:.1} s | – | – |",
        f.backfill.as_secs_f64()
    );
    println!(
        "| open with email on (`Services::open`, cold page cache) | {:.0} ms, RSS {:.0} MiB | – | – |",
        p.open_ms,
        mib(p.rss_open_kib)
    );
    println!(
        "| **due set**: `due_mails(now, usize::MAX)`, the first call after the open | **{:.0} ms** for {} entries ({} expected), {:.0} KiB read | < 1 s | {} |",
        p.due_ms,
        p.due,
        f.expected_due[0],
        p.due_rchar as f64 / 1024.0,
        met(p.due_ms < 1000.0 && p.due == f.expected_due[0])
    );
    println!("| the same, again | {:.0} ms | – | – |", p.due_again_ms);
    println!(
        "| for comparison: a walk of every member (`member_rows`, after the pass) | {:.0} ms for {} members, {:.0} MiB read | – | – |",
        p.walk_ms,
        p.walk_rows,
        p.walk_rchar as f64 / (1024.0 * 1024.0)
    );
    println!(
        "| **statements rendered** (`mail_subject` + `Mailroom::render`, one at a time, the first {} of the due set) | **{:.0}/s** (`render` alone {:.0}/s), {:.0} µs of CPU each, {:.1} KB each | ≥ 2,000/s | {} |",
        p.rendered,
        p.renders_per_sec(),
        p.rendered as f64 / p.render_only_secs.max(1e-9),
        p.render_cpu_secs * 1e6 / p.rendered.max(1) as f64,
        p.statement_bytes as f64 / 1000.0,
        met(p.renders_per_sec() >= 2000.0)
    );
    let what = [
        "**delivered** to an ordinary SMTP server (`Scheduler::pass` over the whole due set, {pool} pooled connections, to the loopback sink)",
        "delivered the same, a day later (the next 1/28 due), to a sink that ACKs every segment at once (no delayed-ACK wait)",
    ];
    for (i, pass) in p.passes.iter().enumerate() {
        let sink = &f.sinks[i];
        let bar = if i == 0 { "≥ 300/s" } else { "–" };
        let all = crate::mail::delivered_all(f, i);
        println!(
            "| {} | **{:.0}/s**: {} sent in {:.1} s, {} failed, {} retrying, {} postponed or dropped; {:.0} µs of CPU each; the sink took {} ({:.1} KB each) on {} connections, {} malformed; {} left due | {bar} | {} |",
            what[i].replace("{pool}", &loyalty_bot::email::mailroom::POOL_SIZE.to_string()),
            pass.sent_per_sec(),
            pass.sent,
            pass.secs,
            pass.failed,
            pass.retrying,
            pass.postponed + pass.dropped,
            pass.cpu_secs * 1e6 / pass.sent.max(1) as f64,
            sink.messages,
            sink.bytes as f64 / sink.messages.max(1) as f64 / 1000.0,
            sink.connections,
            sink.wrong,
            pass.left_due,
            match (i, all) {
                (_, false) => "**no: not all delivered**",
                (0, true) => met(pass.sent_per_sec() >= 300.0),
                _ => "–",
            },
        );
    }
    println!(
        "| **peak RSS** of the mail process (VmHWM after both passes) | **{peak_mib:.0} MiB** | < 300 MiB | {} |",
        met(peak_mib < 300.0)
    );
    println!(
        "| its peak after the comparison walk (which fills sled's page cache) | {:.0} MiB | – | – |",
        mib(p.rss_after_walk_kib)
    );
}
