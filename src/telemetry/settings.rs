//! `[log]`: the format of the log lines and the filter that applies when `RUST_LOG` is unset.

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` (the default) or `json`.
    pub format: LogFormat,
    /// Unset: `info` (`warn` for the terminal chat).
    pub level: Option<LogLevel>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A checked filter: `info`, or directives such as `warn,loyalty_bot=debug`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct LogLevel(String);

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

impl TryFrom<String> for LogLevel {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("is empty; leave the key out for the default".into());
        }
        // A bare word is a target name to `EnvFilter` (`debg` would switch on everything
        // from a module named so): here it must be a level, so a typo is refused.
        for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let bare = !directive.contains(['=', '[']);
            if bare && !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "`{directive}` is neither a level (trace, debug, info, warn, error, off) \
                     nor a `target=level` directive"
                ));
            }
        }
        EnvFilter::builder()
            .parse(&text)
            .map_err(|e| format!("not a log filter: {e}"))?;
        Ok(LogLevel(text))
    }
}

impl LogLevel {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_is_a_level_or_directives_and_a_typo_is_refused() {
        for good in [
            "info",
            "WARN",
            "warn,loyalty_bot=debug",
            "loyalty_bot::http=trace",
            "off",
        ] {
            assert!(LogLevel::try_from(good.to_owned()).is_ok(), "{good}");
        }
        for bad in ["debg", "verbose", "info,lots", "loyalty_bot=loud", ""] {
            assert!(LogLevel::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
    }
}
