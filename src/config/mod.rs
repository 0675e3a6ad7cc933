//! Settings in three layers: the built-in defaults (`defaults.toml`, compiled in), then the
//! operator's file (any subset of keys, or none), then `LOYALTY__<SECTION>__<KEY>` environment
//! variables ([`layers`]). Values are parsed into typed settings once, at start-up; every
//! mistake (an unknown key, a wrong type, a value out of range, a key the chosen shop kind
//! needs) is an error naming the key ([`validate`]). Nothing reads the environment after that.

mod layers;
mod report;
#[cfg(test)]
mod tests;
mod validate;

pub use layers::{Layered, Source, DEFAULTS};
pub use report::render;
pub(crate) use validate::is_loopback;

use crate::domain::{Catalogue, Points, Reward};
use crate::limits::LimitSettings;
use crate::store::Durability;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// Every key that holds a [`Secret`]: `check-config` prints them as `[redacted]`. A unit test
/// checks that this list and the settings' `Secret` fields agree.
pub const SECRET_KEYS: [&str; 14] = [
    "messenger.app_secret",
    "messenger.verify_token",
    "messenger.page_access_token",
    "manychat.token",
    "manychat.api_token",
    "shop.secret",
    "shop.shopify.access_token",
    "shop.shopify.client_secret",
    "shop.shopify.webhook_secret",
    "shop.woocommerce.consumer_key",
    "shop.woocommerce.consumer_secret",
    "shop.woocommerce.webhook_secret",
    "admin.token",
    "metrics.token",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub program: ProgramSettings,
    pub rewards: Vec<RewardSettings>,
    pub messenger: MessengerSettings,
    pub manychat: ManychatSettings,
    pub shop: ShopSettings,
    pub admin: AdminSettings,
    pub limits: LimitSettings,
    /// A folder whose flow files replace the built-in flows of the same name (and add new
    /// ones); `None`: the built-in flows only.
    #[serde(deserialize_with = "optional_path")]
    pub flows_dir: Option<PathBuf>,
    pub metrics: crate::metrics::MetricsSettings,
    pub log: crate::telemetry::LogSettings,
    pub email: crate::email::EmailSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    /// How ManyChat (and later email links) reach us; http or https, no query.
    #[serde(deserialize_with = "web_url")]
    pub public_url: url::Url,
    /// Largest request body on every route but the Messenger webhook; larger ones get 413
    /// before they are read.
    pub max_body_bytes: usize,
    /// Time to send the request line and headers (slowloris); then 408 and the connection closes.
    #[serde(rename = "header_timeout_ms", deserialize_with = "millis")]
    pub header_timeout: Duration,
    /// Time from the headers to the end of the body; then 408 and the connection closes.
    #[serde(rename = "body_timeout_ms", deserialize_with = "millis")]
    pub body_timeout: Duration,
    /// How long an idle keep-alive connection stays open; zero closes after each response.
    #[serde(rename = "keep_alive_secs", deserialize_with = "secs")]
    pub keep_alive: Duration,
    /// How long a closing connection may take to shut down before it is dropped.
    #[serde(rename = "disconnect_timeout_ms", deserialize_with = "millis")]
    pub disconnect_timeout: Duration,
    /// After SIGTERM: how long draining requests, stopping the workers and closing the store
    /// may take together before unfinished work is left queued for the next start.
    #[serde(rename = "shutdown_timeout_secs", deserialize_with = "secs")]
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub path: PathBuf,
    /// sled page-cache size; RSS follows it.
    pub cache_capacity_mb: u64,
    /// Group commit: the least time between the starts of two flushes, in µs, unless
    /// `flush_batch` writes wait. Writers arriving in between share the next flush; a lone
    /// writer after a quiet spell does not wait.
    #[serde(rename = "flush_gap_us", deserialize_with = "micros")]
    pub flush_gap: Duration,
    /// Group commit: a flush starts without waiting out the gap once this many writes wait.
    pub flush_batch: u64,
    /// What an acknowledged write survives: `power_loss` (each flush is `fdatasync`ed) or
    /// `process_crash` (sled's own flush only).
    pub durability: Durability,
    /// While intake records cannot be written (a full or broken disk), received events wait in
    /// memory for the next try up to this many MiB; beyond it a new webhook is refused (500, so
    /// Meta delivers it again) instead of memory growing for as long as the disk stays broken.
    pub max_unwritten_events_mb: u64,
}

/// The languages the built-in flows speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    En,
    De,
}

impl Locale {
    pub fn as_str(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::De => "de",
        }
    }
}

/// An ISO 4217 code: three upper-case letters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Currency(String);

impl Currency {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(code: String) -> Result<Self, String> {
        if code.len() == 3 && code.chars().all(|c| c.is_ascii_uppercase()) {
            Ok(Currency(code))
        } else {
            Err(format!(
                "`{code}` is not a 3-letter ISO currency code such as EUR"
            ))
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramSettings {
    pub signup_bonus: u64,
    /// Points per whole currency unit; may be fractional (`1.5`, or `"1.5"`), never negative.
    #[serde(deserialize_with = "decimal")]
    pub points_per_currency_unit: Decimal,
    pub coupon_valid_days: u32,
    pub currency: Currency,
    pub locale: Locale,
    /// The shop's home page, linked from member emails.
    #[serde(deserialize_with = "optional_web_url")]
    pub shop_url: Option<url::Url>,
    /// Credit a paid order from the shop's webhook to the member whose email it carries, without
    /// a claim (a verified member while email verification is on).
    pub auto_credit: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSettings {
    pub id: String,
    pub title: String,
    pub points: u64,
    pub product_ids: Vec<String>,
    pub checkout_url: String,
    /// What the reward is worth in `program.currency`.
    #[serde(default, deserialize_with = "optional_decimal")]
    pub value: Option<Decimal>,
    /// What the reward's coupon takes off; absent: 100 % off (the product is free).
    #[serde(default)]
    pub discount: Option<DiscountSettings>,
}

/// `[[rewards]] discount = { kind = "percentage" | "amount", value = "…" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscountSettings {
    pub kind: DiscountKind,
    #[serde(deserialize_with = "decimal")]
    pub value: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscountKind {
    Percentage,
    Amount,
}

impl DiscountSettings {
    pub fn discount(&self) -> crate::domain::Discount {
        match self.kind {
            DiscountKind::Percentage => crate::domain::Discount::Percentage(self.value),
            DiscountKind::Amount => crate::domain::Discount::Amount(self.value),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessengerSettings {
    pub app_secret: Secret,
    pub verify_token: Secret,
    pub page_access_token: Secret,
    pub graph_api_url: String,
    /// The Page's username (`m.me/<page_username>`); empty: emails carry no chat link.
    pub page_username: String,
    /// Largest webhook body (Meta batches events, so it is larger than the other routes').
    pub max_body_bytes: usize,
    /// Received events the worker holds in memory; beyond it they wait only in the store and
    /// are read back as the worker catches up, so a long shop outage or a hold cannot grow
    /// memory without bound.
    pub max_events_in_memory: usize,
    /// Events worked on at once (`0`: no bound). After a stall every customer has an event
    /// waiting, and running them all together drains the backlog slower than a few at a time.
    pub max_turns_at_once: usize,
    /// A turn that waits on the shop, Meta or a flush for longer than this gives its place to
    /// another until the wait ends: so a hung shop holds back only its own customers.
    #[serde(rename = "turn_grace_ms", deserialize_with = "millis")]
    pub turn_grace: Duration,
    /// A Send API call unanswered after this fails as transient and is retried later.
    #[serde(rename = "send_timeout_ms", deserialize_with = "millis")]
    pub send_timeout: Duration,
    /// A profile look-up (name, locale) unanswered after this is given up for that reply.
    #[serde(rename = "profile_timeout_ms", deserialize_with = "millis")]
    pub profile_timeout: Duration,
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
    /// ManyChat's API token (Settings → API), for telling contacts order news between their
    /// calls (`POST /fb/sending/sendContent`); empty: the statement email tells them.
    pub api_token: Secret,
    /// `https://api.manychat.com`; tests point it at loopback.
    pub api_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShopKind {
    Fixture,
    Generic,
    Shopify,
    Woocommerce,
}

/// `[shop]`: the keys of every kind side by side (their names and places are what operators'
/// files use); [`validate`] requires of each kind only the keys it uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopSettings {
    pub kind: ShopKind,
    /// The fixture shop's orders file; `None`: the built-in sample orders.
    #[serde(deserialize_with = "optional_path")]
    pub orders_file: Option<PathBuf>,
    pub verify_url: String,
    pub coupon_url: String,
    pub secret: Secret,
    /// How long a shop request may take before the customer is told to try later.
    #[serde(rename = "timeout_secs", deserialize_with = "secs")]
    pub timeout: Duration,
    pub shopify: ShopifySettings,
    pub woocommerce: WoocommerceSettings,
}

/// `[shop.shopify]`: the GraphQL Admin API (docs/shopify.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifySettings {
    /// `my-shop.myshopify.com`.
    pub store_domain: String,
    /// `2026-10`: a stable Admin API version.
    pub api_version: String,
    /// A custom app's admin API token (`shpat_…`); or `client_id` + `client_secret`.
    pub access_token: Secret,
    pub client_id: String,
    pub client_secret: Secret,
    /// Signs `X-Shopify-Hmac-Sha256`; empty: `client_secret` (what Shopify signs app webhooks
    /// with). See [`ShopifySettings::webhook_key`].
    pub webhook_secret: Secret,
    /// Empty: `https://{store_domain}`.
    pub base_url: String,
}

impl ShopifySettings {
    /// The key webhooks are signed with.
    pub fn webhook_key(&self) -> &Secret {
        if self.webhook_secret.is_set() {
            &self.webhook_secret
        } else {
            &self.client_secret
        }
    }

    /// Where API calls go, without a trailing slash.
    pub fn base(&self) -> String {
        if self.base_url.trim().is_empty() {
            format!("https://{}", self.store_domain.trim())
        } else {
            self.base_url.trim().trim_end_matches('/').to_owned()
        }
    }
}

/// `[shop.woocommerce]`: the REST API v3 (docs/woocommerce.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WoocommerceSettings {
    /// The shop's address, `https://shop.example`; plain http only for a loopback address.
    pub url: String,
    pub consumer_key: Secret,
    pub consumer_secret: Secret,
    /// The secret set on each webhook (`X-WC-Webhook-Signature`).
    pub webhook_secret: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub token: Secret,
}

/// The text of a TOML integer, float or string. A float goes through its shortest text
/// (`1.5` → "1.5"), which is exact for any rate or amount a person would type.
fn number_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Float(f64),
        Text(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::Int(i) => i.to_string(),
        Raw::Float(f) => f.to_string(),
        Raw::Text(s) => s,
    })
}

/// A decimal from a TOML integer, float or string.
fn decimal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let text = number_text(d)?;
    text.trim()
        .parse()
        .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a decimal number")))
}

/// Durations are whole numbers in the unit their key names (`_ms`, `_secs`, `_us`).
fn millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

fn secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

fn micros<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_micros)
}

/// An `http` or `https` URL.
fn web_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<url::Url, D::Error> {
    let text = String::deserialize(d)?;
    let url = url::Url::parse(text.trim())
        .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(serde::de::Error::custom("must be an http or https URL"));
    }
    Ok(url)
}

/// An `http` or `https` URL, or `None` for the empty string.
fn optional_web_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<url::Url>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    web_url(serde::de::value::StringDeserializer::<D::Error>::new(text)).map(Some)
}

/// A decimal amount (`"12.00"`, `12`), or `None` for the empty string.
fn optional_decimal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    let text = number_text(d)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let value: Decimal = text.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!("`{text}` is not an amount like \"12.00\""))
    })?;
    if value < Decimal::ZERO {
        return Err(serde::de::Error::custom("must not be negative"));
    }
    Ok(Some(value))
}

/// A path, or `None` for the empty string.
fn optional_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let text = String::deserialize(d)?;
    Ok((!text.trim().is_empty()).then(|| PathBuf::from(text)))
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
    #[error("unknown config key `{key}` {origin}{}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    UnknownKey {
        key: String,
        suggestion: Option<String>,
        /// "in config.toml", "from the environment variable LOYALTY__X__Y".
        origin: String,
    },
    #[error("config: {message}")]
    Shape { message: String },
    #[error("config key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
    #[error("environment variable {var}: {problem}")]
    Env { var: String, problem: String },
}

impl Settings {
    /// The defaults, then the file at `path` if given (it must exist), then the `LOYALTY__`
    /// variables of `env`; validated.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        Self::from_layered(&Layered::load(path, env)?)
    }

    /// The defaults, then `text` as the operator's file (read from `path`), then `env`.
    pub fn from_toml(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        Self::from_layered(&Layered::merge(Some((text, path)), env)?)
    }

    /// Typed and validated settings from merged layers.
    pub fn from_layered(layered: &Layered) -> Result<Settings, ConfigError> {
        let settings: Settings = layered
            .value
            .clone()
            .try_into()
            // The whole text, not `message()`: it ends with the key ("in `limits.x.max`").
            .map_err(|e: toml::de::Error| ConfigError::Shape {
                message: e.to_string().trim().replace('\n', " "),
            })?;
        settings.validate()?;
        Ok(settings)
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
                    value: r.value,
                    discount: r
                        .discount
                        .as_ref()
                        .map(DiscountSettings::discount)
                        .unwrap_or_default(),
                })
                .collect(),
        )
    }

    /// `public_url` without its trailing slash, for joining paths to.
    pub fn public_base(&self) -> String {
        self.server
            .public_url
            .as_str()
            .trim_end_matches('/')
            .to_owned()
    }

    /// `public_url` joined with a path, for callback URLs handed to ManyChat.
    pub fn public_url(&self, path: &str) -> String {
        format!("{}{path}", self.public_base())
    }
}
