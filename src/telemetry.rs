//! Logging: `tracing` events to stderr, filtered by `RUST_LOG` (default `info`, `warn` for the
//! terminal chat so logs do not interleave with the conversation). Colours only
//! on a terminal, so log files and the test harness read plain `key=value` fields.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

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
