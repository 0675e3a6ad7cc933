//! `[log]`: the format of the log lines and the filter that applies when `RUST_LOG` is unset.

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` (the default) or `json`.
    pub format: LogFormat,
    /// Empty: `info` (`warn` for the terminal chat).
    #[serde(deserialize_with = "optional_level")]
    pub level: Option<LogLevel>,
}

/// An empty `level` is the default, not a filter.
fn optional_level<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<LogLevel>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    LogLevel::try_from(text)
        .map(Some)
        .map_err(serde::de::Error::custom)
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

    fn settings(text: &str, env: &[(&str, &str)]) -> Result<crate::config::Settings, String> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        crate::config::Settings::from_toml(text, std::path::Path::new("config.toml"), env)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_log_and_metrics_keys_are_optional_checked_and_named_in_errors() {
        let committed = "";
        let s = settings(committed, &[]).unwrap();
        assert_eq!(s.log.format, LogFormat::Text);
        assert_eq!(s.log.level, None);
        assert!(!s.metrics.token.is_set());

        let s = settings(
            committed,
            &[
                ("LOYALTY__LOG__LEVEL", "warn,loyalty_bot=debug"),
                ("LOYALTY__LOG__FORMAT", "json"),
                ("LOYALTY__METRICS__TOKEN", "t0k"),
            ],
        )
        .unwrap();
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.log.level.unwrap().as_str(), "warn,loyalty_bot=debug");
        assert_eq!(s.metrics.token.expose(), "t0k");

        let typo = settings(committed, &[("LOYALTY__LOG__LEVEL", "debg")]).unwrap_err();
        assert!(
            typo.contains("log.level") && typo.contains("debg"),
            "{typo}"
        );
        let format = settings(committed, &[("LOYALTY__LOG__FORMAT", "yaml")]).unwrap_err();
        assert!(format.contains("log.format"), "{format}");
    }
}
