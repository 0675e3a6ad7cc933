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
    let _ = match settings.format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(json::FlatJson)
            .try_init(),
    };
}

/// Installs the global subscriber; a second call (tests) changes nothing.
pub fn init() {
    init_with_default("info");
}

/// Like [`init`], with another filter when `RUST_LOG` is unset.
pub fn init_with_default(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
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
