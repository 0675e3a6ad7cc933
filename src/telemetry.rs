//! Logging: `tracing` events to stderr, as text (plain `key=value` fields; colours only on a
//! terminal, so log files and the test harness read them plainly) or as one JSON object per
//! line (`log.format = "json"`, see `telemetry/json.rs`). The filter is `RUST_LOG` when set,
//! else `log.level`, else `info` (`warn` for the terminal chat, so logs do not interleave with
//! the conversation).

mod json;
mod settings;

pub use settings::{LogFormat, LogLevel, LogSettings};

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber as `[log]` says; `default_filter` applies when neither
/// `RUST_LOG` nor `log.level` is set. A second call (tests) changes nothing.
pub fn init_with(settings: &LogSettings, default_filter: &str) {
    let fallback = settings
        .level
        .as_ref()
        .map_or(default_filter, LogLevel::as_str);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(fallback));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.format {
        LogFormat::Text => install(builder.with_ansi(std::io::stderr().is_terminal()).finish()),
        LogFormat::Json => install(
            builder
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(json::FlatJson)
                .finish(),
        ),
    }
}

/// Installs the global subscriber; a second call (tests) changes nothing.
pub fn init() {
    init_with_default("info");
}

/// Like [`init`], with another filter when `RUST_LOG` is unset.
pub fn init_with_default(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    install(
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .finish(),
    );
}

/// Sets `subscriber` as the global one, with the `log` records of our dependencies passed to
/// it through [`LogBridge`]; the first call wins.
fn install(subscriber: impl tracing::Subscriber + Send + Sync + 'static) {
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        let bridge = LogBridge(tracing_log::LogTracer::new());
        if log::set_boxed_logger(Box::new(bridge)).is_ok() {
            // As `try_init` does: records above the filter's level stop in the `log` macros,
            // at no cost (sled's hot paths are full of `trace!`).
            use tracing_log::AsLog;
            log::set_max_level(tracing::level_filters::LevelFilter::current().as_log());
        }
    }
}

/// `log` records to `tracing`, as `tracing_log::LogTracer` passes them, less sled's debug and
/// trace lines. Those are sled's internals, and sled writes some of them from clean-up it has
/// deferred (crossbeam-epoch), which may run while a thread's thread-locals are being
/// destroyed: the text formatter's buffer is one of them, and reaching it then aborts the
/// process (seen at `RUST_LOG=trace`, at shutdown).
struct LogBridge(tracing_log::LogTracer);

/// Whether a `log` record is one of sled's debug or trace lines.
fn sled_internals(meta: &log::Metadata<'_>) -> bool {
    let target = meta.target();
    meta.level() > log::Level::Info && (target == "sled" || target.starts_with("sled::"))
}

impl log::Log for LogBridge {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        !sled_internals(meta) && self.0.enabled(meta)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !sled_internals(record.metadata()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Error message with its causes, for logs. Our errors never carry tokens or URLs with them.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(target: &str, level: log::Level) -> log::Metadata<'_> {
        log::Metadata::builder().target(target).level(level).build()
    }

    #[test]
    fn only_sleds_debug_and_trace_lines_are_left_out_of_the_bridge() {
        assert!(sled_internals(&meta(
            "sled::pagecache::iobuf",
            log::Level::Trace
        )));
        assert!(sled_internals(&meta("sled", log::Level::Debug)));
        assert!(!sled_internals(&meta("sled::pagecache", log::Level::Warn)));
        assert!(!sled_internals(&meta("sledge", log::Level::Trace)));
        assert!(!sled_internals(&meta(
            "hyper_util::client",
            log::Level::Trace
        )));
    }
}
