//! Settings: the committed `config.toml`, then `LOYALTY__<SECTION>__<KEY>` environment
//! overrides, checked once at start-up with errors that name the key. Nothing reads the
//! environment after that.

use crate::domain::{Catalogue, Points, Reward};
use crate::limits::LimitSettings;
use crate::store::Durability;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// A secret string: never printed by `Debug` (there is no `Display`), and not comparable with
/// `==`, which would take longer the more leading bytes match. Compare presented values with
/// [`crate::signature::secrets_match`] or [`crate::signature::bearer_matches`].
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "[empty]"
        } else {
            "[redacted]"
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub program: ProgramSettings,
    #[serde(default)]
    pub rewards: Vec<RewardSettings>,
    pub messenger: MessengerSettings,
    pub manychat: ManychatSettings,
    pub shop: ShopSettings,
    pub admin: AdminSettings,
    #[serde(default)]
    pub limits: LimitSettings,
    #[serde(default = "default_flows_dir")]
    pub flows_dir: PathBuf,
    #[serde(default)]
    pub metrics: crate::metrics::MetricsSettings,
    #[serde(default)]
    pub log: crate::telemetry::LogSettings,
}

fn default_flows_dir() -> PathBuf {
    PathBuf::from("flows")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: String,
    pub public_url: String,
    /// Largest request body on every route but the Messenger webhook; larger ones get 413
    /// before they are read.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Time to send the request line and headers (slowloris); then 408 and the connection closes.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// Time from the headers to the end of the body; then 408 and the connection closes.
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// How long an idle keep-alive connection stays open; 0 closes after each response.
    #[serde(default = "default_keep_alive_secs")]
    pub keep_alive_secs: u64,
    /// How long a closing connection may take to shut down before it is dropped.
    #[serde(default = "default_disconnect_timeout_ms")]
    pub disconnect_timeout_ms: u64,
    /// After SIGTERM: how long draining requests, stopping the workers and closing the store
    /// may take together before unfinished work is left queued for the next start.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_secs: u64,
}

fn default_max_body_bytes() -> usize {
    64 * 1024
}
fn default_header_timeout_ms() -> u64 {
    5_000
}
fn default_body_timeout_ms() -> u64 {
    10_000
}
fn default_keep_alive_secs() -> u64 {
    5
}
fn default_disconnect_timeout_ms() -> u64 {
    1_000
}
fn default_webhook_body_bytes() -> usize {
    1 << 20
}
fn default_events_in_memory() -> usize {
    20_000
}
fn default_turns_at_once() -> usize {
    64
}
fn default_turn_grace_ms() -> u64 {
    5
}
fn default_send_timeout_ms() -> u64 {
    10_000
}
fn default_profile_timeout_ms() -> u64 {
    2_000
}
fn default_shutdown_timeout() -> u64 {
    10
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub path: PathBuf,
    /// sled page-cache size; RSS follows it.
    #[serde(default = "default_cache")]
    pub cache_capacity_mb: u64,
    /// Group commit: the least time between the starts of two flushes, in µs, unless
    /// `flush_batch` writes wait. Writers arriving in between share the next flush; a lone
    /// writer after a quiet spell does not wait.
    #[serde(default = "default_flush_gap")]
    pub flush_gap_us: u64,
    /// Group commit: a flush starts without waiting out the gap once this many writes wait.
    #[serde(default = "default_flush_batch")]
    pub flush_batch: u64,
    /// What an acknowledged write survives: `power_loss` (each flush is `fdatasync`ed) or
    /// `process_crash` (sled's own flush only).
    #[serde(default)]
    pub durability: Durability,
    /// While intake records cannot be written (a full or broken disk), received events wait in
    /// memory for the next try up to this many MiB; beyond it a new webhook is refused (500, so
    /// Meta delivers it again) instead of memory growing for as long as the disk stays broken.
    #[serde(default = "default_unwritten_events_mb")]
    pub max_unwritten_events_mb: u64,
}

fn default_cache() -> u64 {
    64
}

fn default_unwritten_events_mb() -> u64 {
    8
}

fn default_flush_gap() -> u64 {
    2000
}

fn default_flush_batch() -> u64 {
    32
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramSettings {
    pub signup_bonus: u64,
    /// Points per whole currency unit; may be fractional (`1.5`, or `"1.5"`), never negative.
    #[serde(deserialize_with = "decimal")]
    pub points_per_currency_unit: Decimal,
    pub coupon_valid_days: u32,
    pub currency: String,
    pub locale: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSettings {
    pub id: String,
    pub title: String,
    pub points: u64,
    pub product_ids: Vec<String>,
    pub checkout_url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessengerSettings {
    pub app_secret: Secret,
    pub verify_token: Secret,
    pub page_access_token: Secret,
    pub graph_api_url: String,
    /// Largest webhook body (Meta batches events, so it is larger than the other routes').
    #[serde(default = "default_webhook_body_bytes")]
    pub max_body_bytes: usize,
    /// Received events the worker holds in memory; beyond it they wait only in the store and
    /// are read back as the worker catches up, so a long shop outage or a hold cannot grow
    /// memory without bound.
    #[serde(default = "default_events_in_memory")]
    pub max_events_in_memory: usize,
    /// Events worked on at once (`0`: no bound). After a stall every customer has an event
    /// waiting, and running them all together drains the backlog slower than a few at a time.
    #[serde(default = "default_turns_at_once")]
    pub max_turns_at_once: usize,
    /// A turn that waits on the shop, Meta or a flush for longer than this gives its place to
    /// another until the wait ends: so a hung shop holds back only its own customers.
    #[serde(default = "default_turn_grace_ms")]
    pub turn_grace_ms: u64,
    /// A Send API call unanswered after this fails as transient and is retried later.
    #[serde(default = "default_send_timeout_ms")]
    pub send_timeout_ms: u64,
    /// A profile look-up (name, locale) unanswered after this is given up for that reply.
    #[serde(default = "default_profile_timeout_ms")]
    pub profile_timeout_ms: u64,
}

impl MessengerSettings {
    pub fn enabled(&self) -> bool {
        self.app_secret.is_set() && self.verify_token.is_set() && self.page_access_token.is_set()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManychatSettings {
    pub token: Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShopKind {
    Fixture,
    Generic,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopSettings {
    pub kind: ShopKind,
    pub orders_file: PathBuf,
    pub verify_url: String,
    pub coupon_url: String,
    pub secret: Secret,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub token: Secret,
}

/// A decimal from a TOML integer, float or string. A float goes through its shortest text
/// (`1.5` → "1.5"), which is exact for any rate a person would type.
fn decimal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Float(f64),
        Text(String),
    }
    let text = match Raw::deserialize(d)? {
        Raw::Int(i) => i.to_string(),
        Raw::Float(f) => f.to_string(),
        Raw::Text(s) => s,
    };
    text.trim()
        .parse()
        .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a decimal number")))
}

/// A configuration mistake, naming the key (or file) and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config: {message}")]
    Shape { message: String },
    #[error("config key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
    #[error("environment variable {var}: {problem}")]
    Env { var: String, problem: String },
}

const ENV_PREFIX: &str = "LOYALTY__";
/// The catalogue must fit one set of quick replies on every channel.
const MAX_REWARDS: usize = 10;

impl Settings {
    /// Reads `path`, applies environment overrides from `env`, and validates.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path, env)
    }

    pub fn from_toml(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut value: toml::Value =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_owned(),
                    message: e.message().to_owned(),
                })?;
        for (var, raw) in env {
            if let Some(rest) = var.strip_prefix(ENV_PREFIX) {
                apply_override(&mut value, &var, rest, &raw)?;
            }
        }
        let settings: Settings = value
            .try_into()
            // The whole text, not `message()`: it ends with the key ("in `limits.x.max`").
            .map_err(|e: toml::de::Error| ConfigError::Shape {
                message: e.to_string().trim().replace('\n', " "),
            })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, problem: &str| ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
        };
        if self.server.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(bad("server.bind", "must be an address like 127.0.0.1:8080"));
        }
        let public = url::Url::parse(&self.server.public_url)
            .map_err(|e| bad("server.public_url", &format!("not a URL: {e}")))?;
        if !matches!(public.scheme(), "http" | "https") {
            return Err(bad("server.public_url", "must be http or https"));
        }
        self.validate_server()?;
        self.limits
            .validate()
            .map_err(|(key, problem)| ConfigError::Invalid { key, problem })?;
        if !(1..=300).contains(&self.server.shutdown_timeout_secs) {
            return Err(bad(
                "server.shutdown_timeout_secs",
                "must be between 1 and 300",
            ));
        }
        if !(1..=1024).contains(&self.store.max_unwritten_events_mb) {
            return Err(bad(
                "store.max_unwritten_events_mb",
                "must be between 1 and 1024",
            ));
        }
        if !(1..=1_000_000).contains(&self.store.flush_batch) {
            return Err(bad("store.flush_batch", "must be between 1 and 1000000"));
        }
        if self.store.flush_gap_us > 100_000 {
            return Err(bad(
                "store.flush_gap_us",
                "must be at most 100000 (0.1 s): every durable answer waits for it",
            ));
        }
        let rate = self.program.points_per_currency_unit;
        if rate <= Decimal::ZERO || rate > Decimal::from(1000) {
            return Err(bad(
                "program.points_per_currency_unit",
                "must be more than 0 and at most 1000",
            ));
        }
        if self.program.coupon_valid_days == 0 || self.program.coupon_valid_days > 3650 {
            return Err(bad(
                "program.coupon_valid_days",
                "must be between 1 and 3650",
            ));
        }
        let cur = &self.program.currency;
        if cur.len() != 3 || !cur.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(bad(
                "program.currency",
                "must be a 3-letter ISO code such as EUR",
            ));
        }
        if !matches!(self.program.locale.as_str(), "en" | "de") {
            return Err(bad("program.locale", "must be \"en\" or \"de\""));
        }
        if self.rewards.is_empty() {
            return Err(bad("rewards", "define at least one [[rewards]] entry"));
        }
        if self.rewards.len() > MAX_REWARDS {
            return Err(bad(
                "rewards",
                "at most 10 rewards: the catalogue is offered as quick replies (ManyChat shows 11)",
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for (i, r) in self.rewards.iter().enumerate() {
            let key = |k: &str| format!("rewards[{i}].{k}");
            if r.id.is_empty()
                || !r
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                || r.id.len() > 40
            {
                return Err(bad(
                    &key("id"),
                    "1-40 characters of letters, digits, - and _",
                ));
            }
            if !ids.insert(r.id.to_ascii_lowercase()) {
                return Err(bad(&key("id"), "duplicate reward id"));
            }
            if r.title.trim().is_empty() {
                return Err(bad(&key("title"), "must not be empty"));
            }
            if r.points == 0 {
                return Err(bad(&key("points"), "must be at least 1"));
            }
            if r.product_ids.is_empty() {
                return Err(bad(
                    &key("product_ids"),
                    "a reward coupon must be limited to at least one product",
                ));
            }
            url::Url::parse(&r.checkout_url)
                .map_err(|e| bad(&key("checkout_url"), &format!("not a URL: {e}")))?;
        }
        if self.messenger.enabled() {
            url::Url::parse(&self.messenger.graph_api_url)
                .map_err(|e| bad("messenger.graph_api_url", &format!("not a URL: {e}")))?;
        }
        if self.shop.timeout_secs == 0 || self.shop.timeout_secs > 60 {
            return Err(bad("shop.timeout_secs", "must be between 1 and 60"));
        }
        if self.shop.kind == ShopKind::Generic {
            for (k, v) in [
                ("shop.verify_url", &self.shop.verify_url),
                ("shop.coupon_url", &self.shop.coupon_url),
            ] {
                url::Url::parse(v).map_err(|e| {
                    bad(
                        k,
                        &format!("required for kind = \"generic\"; not a URL: {e}"),
                    )
                })?;
            }
            if !self.shop.secret.is_set() {
                return Err(bad(
                    "shop.secret",
                    "required for kind = \"generic\" (set LOYALTY__SHOP__SECRET)",
                ));
            }
        }
        Ok(())
    }

    /// Timeouts and body sizes: each within a range that keeps the service usable.
    fn validate_server(&self) -> Result<(), ConfigError> {
        const MIB: u64 = 1 << 20;
        let s = &self.server;
        let checks = [
            (
                "server.max_body_bytes",
                s.max_body_bytes as u64,
                1024,
                16 * MIB,
            ),
            (
                "messenger.max_body_bytes",
                self.messenger.max_body_bytes as u64,
                64 * 1024,
                16 * MIB,
            ),
            (
                "messenger.max_events_in_memory",
                self.messenger.max_events_in_memory as u64,
                1,
                10_000_000,
            ),
            (
                "messenger.max_turns_at_once",
                self.messenger.max_turns_at_once as u64,
                0,
                100_000,
            ),
            (
                "messenger.turn_grace_ms",
                self.messenger.turn_grace_ms,
                0,
                10_000,
            ),
            (
                "messenger.send_timeout_ms",
                self.messenger.send_timeout_ms,
                100,
                60_000,
            ),
            (
                "messenger.profile_timeout_ms",
                self.messenger.profile_timeout_ms,
                100,
                30_000,
            ),
            ("server.header_timeout_ms", s.header_timeout_ms, 100, 60_000),
            ("server.body_timeout_ms", s.body_timeout_ms, 100, 300_000),
            ("server.keep_alive_secs", s.keep_alive_secs, 0, 3600),
            (
                "server.disconnect_timeout_ms",
                s.disconnect_timeout_ms,
                0,
                60_000,
            ),
        ];
        for (key, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    problem: format!("must be between {min} and {max}"),
                });
            }
        }
        Ok(())
    }

    pub fn catalogue(&self) -> Catalogue {
        Catalogue::new(
            self.rewards
                .iter()
                .map(|r| Reward {
                    id: r.id.clone(),
                    title: r.title.clone(),
                    points: Points(r.points),
                    product_ids: r.product_ids.clone(),
                    checkout_url: r.checkout_url.clone(),
                })
                .collect(),
        )
    }

    /// `public_url` joined with a path, for callback URLs handed to ManyChat.
    pub fn public_url(&self, path: &str) -> String {
        format!("{}{}", self.server.public_url.trim_end_matches('/'), path)
    }
}

/// The committed `config.toml`, which holds every key: the type of a key that an operator's own
/// file leaves out (to its default) but the environment sets.
const COMMITTED: &str = include_str!("../config.toml");

/// The committed file's value at `sections` + `key`, if it has one.
fn committed_value(sections: &[String], key: &str) -> Option<toml::Value> {
    let root: toml::Value = COMMITTED.parse().ok()?;
    let mut table = root.as_table()?;
    for s in sections {
        table = table.get(s)?.as_table()?;
    }
    table.get(key).cloned()
}

/// `LOYALTY__MESSENGER__APP_SECRET=x` sets `messenger.app_secret = "x"`. The value keeps the
/// type of the key it replaces (or, for a key the file leaves out, of that key in the committed
/// `config.toml`): strings stay strings, numbers and booleans are parsed.
fn apply_override(
    root: &mut toml::Value,
    var: &str,
    path: &str,
    raw: &str,
) -> Result<(), ConfigError> {
    let err = |problem: &str| ConfigError::Env {
        var: var.into(),
        problem: problem.into(),
    };
    let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(err("expected LOYALTY__<SECTION>__<KEY>"));
    }
    let (last, sections) = parts.split_last().ok_or_else(|| err("no key"))?;
    let mut table = root
        .as_table_mut()
        .ok_or_else(|| err("config root is not a table"))?;
    for s in sections {
        table = table
            .entry(s.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| err(&format!("`{s}` is not a section")))?;
    }
    let committed = || committed_value(sections, last);
    let new = match table.get(last).cloned().or_else(committed).as_ref() {
        None | Some(toml::Value::String(_)) => toml::Value::String(raw.to_owned()),
        // Keys that hold a decimal (the points rate) are written as integers in the file.
        Some(toml::Value::Integer(_)) if raw.trim().contains('.') => {
            toml::Value::String(raw.trim().to_owned())
        }
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| err("expected a whole number"))?,
        ),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(
            raw.trim()
                .parse()
                .map_err(|_| err("expected true or false"))?,
        ),
        Some(toml::Value::Float(_)) => {
            toml::Value::Float(raw.trim().parse().map_err(|_| err("expected a number"))?)
        }
        Some(_) => return Err(err("this key cannot be set from the environment")),
    };
    table.insert(last.clone(), new);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = include_str!("../config.toml");

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_toml(
            text,
            Path::new("config.toml"),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn a_key_left_out_of_the_file_is_set_from_the_environment_with_its_committed_type() {
        // An operator's file that leaves every defaulted key out.
        let minimal = r#"
            flows_dir = "flows"
            [server]
            bind = "127.0.0.1:8080"
            public_url = "https://loyalty.example"
            [store]
            path = "data"
            [program]
            locale = "en"
            currency = "EUR"
            coupon_valid_days = 30
            signup_bonus = 50
            [messenger]
            app_secret = ""
            verify_token = ""
            page_access_token = ""
            graph_api_url = "https://graph.facebook.com/v25.0"
            [manychat]
            token = ""
            [shop]
            timeout_secs = 5
            secret = ""
            coupon_url = ""
            verify_url = ""
            kind = "fixture"
            orders_file = "fixtures/shop/orders.json"
            [admin]
            token = ""
            [[rewards]]
            id = "free-mug"
            title = "Free mug"
            points = 200
            product_ids = ["mug-classic"]
            checkout_url = "https://shop.example/products/mug-classic"
        "#;
        let env = [
            ("LOYALTY__MESSENGER__MAX_TURNS_AT_ONCE", "32"),
            ("LOYALTY__STORE__FLUSH_GAP_US", "3000"),
            ("LOYALTY__STORE__DURABILITY", "process_crash"),
            ("LOYALTY__PROGRAM__POINTS_PER_CURRENCY_UNIT", "1.5"),
            ("LOYALTY__MESSENGER__VERIFY_TOKEN", "12345"),
        ];
        let s = load(minimal, &env).unwrap();
        assert_eq!(s.messenger.max_turns_at_once, 32);
        assert_eq!(s.store.flush_gap_us, 3000);
        assert_eq!(s.store.durability, Durability::ProcessCrash);
        assert_eq!(s.program.points_per_currency_unit, Decimal::new(15, 1));
        // A secret of digits stays a string.
        assert_eq!(s.messenger.verify_token.expose(), "12345");
        let e = load(minimal, &[("LOYALTY__MESSENGER__TURN_GRACE_MS", "soon")]).unwrap_err();
        assert!(e.to_string().contains("whole number"), "{e}");
    }

    #[test]
    fn committed_config_is_valid_and_has_channels_disabled() {
        let s = load(BASE, &[]).unwrap();
        assert_eq!(s.program.signup_bonus, 50);
        assert!(!s.messenger.enabled());
        assert!(!s.manychat.token.is_set());
        assert_eq!(s.catalogue().cheapest().unwrap().points, Points(200));
    }

    #[test]
    fn environment_overrides_any_key_with_its_type() {
        let s = load(
            BASE,
            &[
                ("LOYALTY__MESSENGER__APP_SECRET", "s3cret"),
                ("LOYALTY__PROGRAM__SIGNUP_BONUS", "75"),
                ("LOYALTY__SERVER__BIND", "127.0.0.1:9999"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(s.messenger.app_secret.expose(), "s3cret");
        assert_eq!(s.program.signup_bonus, 75);
        assert_eq!(s.server.bind, "127.0.0.1:9999");
    }

    #[test]
    fn the_points_rate_may_be_fractional_from_file_or_environment() {
        let s = load(
            BASE,
            &[("LOYALTY__PROGRAM__POINTS_PER_CURRENCY_UNIT", "1.5")],
        )
        .unwrap();
        assert_eq!(s.program.points_per_currency_unit.to_string(), "1.5");
        let text = BASE.replace(
            "points_per_currency_unit = 1",
            "points_per_currency_unit = 0.5",
        );
        let s = load(&text, &[]).unwrap();
        assert_eq!(s.program.points_per_currency_unit.to_string(), "0.5");
        for bad in ["0", "-1", "abc", "1001"] {
            let e = load(BASE, &[("LOYALTY__PROGRAM__POINTS_PER_CURRENCY_UNIT", bad)]).unwrap_err();
            assert!(
                e.to_string().contains("POINTS_PER_CURRENCY_UNIT")
                    || e.to_string().contains("points_per_currency_unit"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn answers_wait_for_power_loss_safety_unless_the_owner_chooses_otherwise() {
        let s = load(BASE, &[]).unwrap();
        assert_eq!(s.store.durability, Durability::PowerLoss);
        let without = BASE.replace("durability = \"power_loss\"", "");
        assert_ne!(without, BASE, "the committed config names its durability");
        assert_eq!(
            load(&without, &[]).unwrap().store.durability,
            Durability::PowerLoss
        );
        let s = load(BASE, &[("LOYALTY__STORE__DURABILITY", "process_crash")]).unwrap();
        assert_eq!(s.store.durability, Durability::ProcessCrash);
        let e = load(BASE, &[("LOYALTY__STORE__DURABILITY", "sometimes")]).unwrap_err();
        assert!(e.to_string().contains("store.durability"), "{e}");
    }

    #[test]
    fn mistakes_name_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("LOYALTY__PROGRAM__SIGNUP_BONUS", "lots")],
                "LOYALTY__PROGRAM__SIGNUP_BONUS",
            ),
            (
                &[("LOYALTY__PROGRAM__CURRENCY", "euro")],
                "program.currency",
            ),
            (&[("LOYALTY__SERVER__BIND", "nowhere")], "server.bind"),
            (&[("LOYALTY__SHOP__KIND", "generic")], "shop.verify_url"),
            (&[("LOYALTY__SHOP__TIMEOUT_SECS", "0")], "shop.timeout_secs"),
            (
                &[("LOYALTY__SERVER__SHUTDOWN_TIMEOUT_SECS", "0")],
                "server.shutdown_timeout_secs",
            ),
            (&[("LOYALTY__PROGRAM__LOCALE", "fr")], "program.locale"),
            (&[("LOYALTY__PROGRAM__COLOUR", "red")], "colour"),
            (
                &[("LOYALTY__SERVER__BODY_TIMEOUT_MS", "0")],
                "server.body_timeout_ms",
            ),
            (
                &[("LOYALTY__SERVER__MAX_BODY_BYTES", "10")],
                "server.max_body_bytes",
            ),
            (
                &[("LOYALTY__MESSENGER__MAX_BODY_BYTES", "999999999")],
                "messenger.max_body_bytes",
            ),
            (
                &[("LOYALTY__MESSENGER__MAX_EVENTS_IN_MEMORY", "0")],
                "messenger.max_events_in_memory",
            ),
            (
                &[("LOYALTY__STORE__MAX_UNWRITTEN_EVENTS_MB", "0")],
                "store.max_unwritten_events_mb",
            ),
            (&[("LOYALTY__STORE__FLUSH_BATCH", "0")], "store.flush_batch"),
            (
                &[("LOYALTY__MESSENGER__MAX_TURNS_AT_ONCE", "100001")],
                "messenger.max_turns_at_once",
            ),
            (
                &[("LOYALTY__MESSENGER__TURN_GRACE_MS", "10001")],
                "messenger.turn_grace_ms",
            ),
            (
                &[("LOYALTY__MESSENGER__SEND_TIMEOUT_MS", "99")],
                "messenger.send_timeout_ms",
            ),
            (
                &[("LOYALTY__MESSENGER__PROFILE_TIMEOUT_MS", "30001")],
                "messenger.profile_timeout_ms",
            ),
            (
                &[(
                    "LOYALTY__LIMITS__FAILED_CLAIMS_PER_MEMBER__WINDOW_SECS",
                    "0",
                )],
                "limits.failed_claims_per_member.window_secs",
            ),
            (
                &[("LOYALTY__LIMITS__ADMIN_PER_IP__MAX", "-1")],
                "limits.admin_per_ip.max",
            ),
            (
                &[("LOYALTY__LIMITS__TRUSTED_PROXIES", "10.0.0.1, proxy")],
                "limits.trusted_proxies",
            ),
            (
                &[("LOYALTY__LIMITS__MAX_TRACKED_KEYS", "5")],
                "limits.max_tracked_keys",
            ),
        ];
        for (env, key) in cases {
            let e = load(BASE, env).unwrap_err().to_string();
            assert!(e.contains(key), "{env:?}: {e}");
        }
    }

    #[test]
    fn a_catalogue_larger_than_one_set_of_quick_replies_is_refused() {
        let mut text = BASE.to_owned();
        for i in 0..10 {
            text.push_str(&format!(
                "\n[[rewards]]\nid = \"r{i}\"\ntitle = \"R{i}\"\npoints = {}\nproduct_ids = [\"p\"]\ncheckout_url = \"https://shop.example/\"\n",
                300 + i
            ));
        }
        let e = load(&text, &[]).unwrap_err().to_string();
        assert!(e.contains("`rewards`") && e.contains("at most 10"), "{e}");
    }

    #[test]
    fn every_secret_is_redacted_in_debug_output() {
        let secrets = [
            ("LOYALTY__MESSENGER__APP_SECRET", "app-secret-111"),
            ("LOYALTY__MESSENGER__VERIFY_TOKEN", "verify-token-222"),
            ("LOYALTY__MESSENGER__PAGE_ACCESS_TOKEN", "page-token-333"),
            ("LOYALTY__MANYCHAT__TOKEN", "manychat-token-444"),
            ("LOYALTY__ADMIN__TOKEN", "admin-token-555"),
            ("LOYALTY__SHOP__SECRET", "shop-secret-666"),
        ];
        let s = load(BASE, &secrets).unwrap();
        for dbg in [format!("{s:?}"), format!("{s:#?}")] {
            for (var, value) in secrets {
                assert!(!dbg.contains(value), "{var} shows in {dbg}");
            }
            assert_eq!(dbg.matches("[redacted]").count(), secrets.len(), "{dbg}");
        }
        assert_eq!(format!("{:?}", Secret::new("x")), "[redacted]");
        assert_eq!(format!("{:?}", Secret::default()), "[empty]");
    }

    #[test]
    fn the_committed_limits_are_the_documented_defaults() {
        let s = load(BASE, &[]).unwrap();
        let defaults = LimitSettings::default();
        assert_eq!(s.limits.rates(), defaults.rates());
        assert_eq!(s.limits.trusted_proxies, defaults.trusted_proxies);
        assert_eq!(s.limits.max_tracked_keys, defaults.max_tracked_keys);
        let server = (
            s.server.max_body_bytes,
            s.server.header_timeout_ms,
            s.server.body_timeout_ms,
            s.server.keep_alive_secs,
            s.server.disconnect_timeout_ms,
        );
        assert_eq!(server, (65536, 5000, 10_000, 5, 1000));
        assert_eq!(s.messenger.max_body_bytes, 1 << 20);
        assert_eq!(s.messenger.max_events_in_memory, 20_000);
        assert_eq!(s.messenger.max_turns_at_once, default_turns_at_once());
        assert_eq!(s.messenger.turn_grace_ms, default_turn_grace_ms());
        assert_eq!(s.messenger.send_timeout_ms, default_send_timeout_ms());
        assert_eq!(s.messenger.profile_timeout_ms, default_profile_timeout_ms());
        assert_eq!(
            s.store.max_unwritten_events_mb,
            default_unwritten_events_mb()
        );
        let pacing = (s.store.flush_gap_us, s.store.flush_batch);
        assert_eq!(pacing, (default_flush_gap(), default_flush_batch()));
        // Every key is documented in docs/limits.md.
        let doc = include_str!("../docs/limits.md");
        let mut keys: Vec<String> = s
            .limits
            .rates()
            .iter()
            .map(|(k, _)| k.to_string())
            .collect();
        keys.extend(
            [
                "limits.trusted_proxies",
                "limits.max_tracked_keys",
                "server.max_body_bytes",
                "server.header_timeout_ms",
                "server.body_timeout_ms",
                "server.keep_alive_secs",
                "server.disconnect_timeout_ms",
                "messenger.max_body_bytes",
                "messenger.max_events_in_memory",
                "messenger.max_turns_at_once",
                "messenger.turn_grace_ms",
                "messenger.send_timeout_ms",
                "messenger.profile_timeout_ms",
                "store.max_unwritten_events_mb",
            ]
            .map(String::from),
        );
        for key in keys {
            assert!(
                doc.contains(&format!("`{key}")),
                "{key} is not in docs/limits.md"
            );
        }
    }

    #[test]
    fn any_limit_can_be_set_from_the_environment() {
        let s = load(
            BASE,
            &[
                ("LOYALTY__LIMITS__FAILED_CLAIMS_PER_MEMBER__MAX", "2"),
                ("LOYALTY__LIMITS__ADMIN_PER_IP__WINDOW_SECS", "10"),
                ("LOYALTY__LIMITS__TRUSTED_PROXIES", "10.0.0.1,::1"),
                ("LOYALTY__SERVER__BODY_TIMEOUT_MS", "250"),
            ],
        )
        .unwrap();
        assert_eq!(s.limits.failed_claims_per_member.max, 2);
        assert_eq!(s.limits.admin_per_ip.window_secs, 10);
        assert_eq!(s.limits.trusted_proxies, "10.0.0.1,::1");
        assert_eq!(s.server.body_timeout_ms, 250);
    }
}
