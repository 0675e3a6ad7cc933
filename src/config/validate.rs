//! The checks a value's type cannot make: ranges, cross-key rules, the keys each shop kind
//! requires. Each failure names its key.

use super::{ConfigError, Settings, ShopKind};
use rust_decimal::Decimal;

/// The catalogue must fit one set of quick replies on every channel.
const MAX_REWARDS: usize = 10;

impl Settings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, problem: &str| ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
        };
        if self.server.public_url.query().is_some() {
            return Err(bad("server.public_url", "must not have a query"));
        }
        self.validate_server()?;
        self.limits
            .validate()
            .map_err(|(key, problem)| ConfigError::Invalid { key, problem })?;
        if !(1..=300).contains(&self.server.shutdown_timeout.as_secs()) {
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
        if self.store.flush_gap > std::time::Duration::from_micros(100_000) {
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
            if let Some(d) = &r.discount {
                let hundred = Decimal::ONE_HUNDRED;
                match d.kind {
                    super::DiscountKind::Percentage
                        if d.value <= Decimal::ZERO || d.value > hundred =>
                    {
                        return Err(bad(
                            &key("discount"),
                            "a percentage must be more than 0 and at most 100",
                        ));
                    }
                    super::DiscountKind::Amount if d.value <= Decimal::ZERO => {
                        return Err(bad(&key("discount"), "an amount must be more than 0"));
                    }
                    _ => {}
                }
            }
        }
        if self.messenger.enabled() {
            url::Url::parse(&self.messenger.graph_api_url)
                .map_err(|e| bad("messenger.graph_api_url", &format!("not a URL: {e}")))?;
        }
        if self.manychat.api_token.is_set() {
            match url::Url::parse(&self.manychat.api_url) {
                Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u)) => {}
                Ok(_) => return Err(bad(
                    "manychat.api_url",
                    "must be https: the API token travels in every request (plain http is accepted only for a loopback address)",
                )),
                Err(e) => return Err(bad("manychat.api_url", &format!("not a URL: {e}"))),
            }
        }
        if !(1..=60).contains(&self.shop.timeout.as_secs()) {
            return Err(bad("shop.timeout_secs", "must be between 1 and 60"));
        }
        self.validate_shop()?;
        Ok(())
    }

    /// Each shop kind requires the keys it uses, and only those.
    fn validate_shop(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, problem: String| ConfigError::Invalid {
            key: key.into(),
            problem,
        };
        let shop = &self.shop;
        match shop.kind {
            ShopKind::Fixture => {
                if let Some(path) = &shop.orders_file {
                    if !path.is_file() {
                        return Err(bad(
                            "shop.orders_file",
                            format!("{} is not a readable file", path.display()),
                        ));
                    }
                }
            }
            ShopKind::Generic => {
                for (key, value) in [
                    ("shop.verify_url", &shop.verify_url),
                    ("shop.coupon_url", &shop.coupon_url),
                ] {
                    if value.trim().is_empty() {
                        return Err(bad(key, "required for kind = \"generic\"".into()));
                    }
                    let url = url::Url::parse(value.trim())
                        .map_err(|e| bad(key, format!("`{value}` is not a URL: {e}")))?;
                    if !matches!(url.scheme(), "http" | "https") {
                        return Err(bad(key, "must be an http or https URL".into()));
                    }
                }
                if !shop.secret.is_set() {
                    return Err(bad(
                        "shop.secret",
                        "required for kind = \"generic\" (set LOYALTY__SHOP__SECRET)".into(),
                    ));
                }
            }
            ShopKind::Shopify => validate_shopify(&shop.shopify)?,
            ShopKind::Woocommerce => {
                validate_woocommerce(&shop.woocommerce)?;
                self.validate_woocommerce_products()?;
            }
        }
        Ok(())
    }

    /// A WooCommerce coupon is limited to products by their numeric ids.
    fn validate_woocommerce_products(&self) -> Result<(), ConfigError> {
        for (i, r) in self.rewards.iter().enumerate() {
            let numeric = |id: &String| {
                let id = id.trim();
                id.bytes().all(|b| b.is_ascii_digit()) && id.parse::<u64>().is_ok_and(|n| n > 0)
            };
            if let Some(bad) = r.product_ids.iter().find(|id| !numeric(id)) {
                return Err(invalid(
                    &format!("rewards[{i}].product_ids"),
                    format!(
                        "`{bad}` is not a WooCommerce product id: use the number shown as ID \
                         in Products (or a variation's id)"
                    ),
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
                ms(self.messenger.turn_grace),
                0,
                10_000,
            ),
            (
                "messenger.send_timeout_ms",
                ms(self.messenger.send_timeout),
                100,
                60_000,
            ),
            (
                "messenger.profile_timeout_ms",
                ms(self.messenger.profile_timeout),
                100,
                30_000,
            ),
            (
                "server.header_timeout_ms",
                ms(s.header_timeout),
                100,
                60_000,
            ),
            ("server.body_timeout_ms", ms(s.body_timeout), 100, 300_000),
            ("server.keep_alive_secs", s.keep_alive.as_secs(), 0, 3600),
            (
                "server.disconnect_timeout_ms",
                ms(s.disconnect_timeout),
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
}

/// A duration in whole milliseconds, as its key gives it.
fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// `[shop.shopify]`: a domain, a version, one way to authenticate, and the webhook key.
fn validate_shopify(s: &super::ShopifySettings) -> Result<(), ConfigError> {
    const KIND: &str = "required for kind = \"shopify\"";
    let domain = s.store_domain.trim();
    if domain.is_empty() {
        return Err(invalid("shop.shopify.store_domain", KIND));
    }
    if domain.contains("://") || domain.contains('/') || !domain.contains('.') {
        return Err(invalid(
            "shop.shopify.store_domain",
            format!("`{domain}` is not a host name like my-shop.myshopify.com"),
        ));
    }
    let v = s.api_version.trim();
    let version_ok = v.len() == 7
        && v.as_bytes()[4] == b'-'
        && v[..4].bytes().all(|b| b.is_ascii_digit())
        && matches!(&v[5..], "01" | "04" | "07" | "10");
    if !version_ok {
        return Err(invalid(
            "shop.shopify.api_version",
            format!(
                "`{v}` is not a stable Admin API version like 2026-10 (YYYY-01, -04, -07 or -10)"
            ),
        ));
    }
    match (
        s.access_token.is_set(),
        !s.client_id.trim().is_empty(),
        s.client_secret.is_set(),
    ) {
        (true, false, _) => {}
        (false, true, true) => {}
        (true, true, _) => {
            return Err(invalid(
                "shop.shopify.access_token",
                "set either access_token or client_id + client_secret, not both",
            ))
        }
        (false, true, false) => {
            return Err(invalid(
                "shop.shopify.client_secret",
                "required with client_id (set LOYALTY__SHOP__SHOPIFY__CLIENT_SECRET)",
            ))
        }
        (false, false, _) => {
            return Err(invalid(
                "shop.shopify.access_token",
                "required for kind = \"shopify\": an admin API token, or client_id + client_secret",
            ))
        }
    }
    if !s.webhook_key().is_set() {
        return Err(invalid(
            "shop.shopify.webhook_secret",
            "required for kind = \"shopify\" (webhooks are refused without it)",
        ));
    }
    if !s.base_url.trim().is_empty() {
        let url = url::Url::parse(s.base_url.trim()).map_err(|e| {
            invalid(
                "shop.shopify.base_url",
                format!("`{}` is not a URL: {e}", s.base_url),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(
                "shop.shopify.base_url",
                "must be an http or https URL",
            ));
        }
    }
    Ok(())
}

/// `[shop.woocommerce]`: an https address (plain http only on loopback), the key pair and the
/// webhook secret.
fn validate_woocommerce(s: &super::WoocommerceSettings) -> Result<(), ConfigError> {
    let raw = s.url.trim();
    if raw.is_empty() {
        return Err(invalid(
            "shop.woocommerce.url",
            "required for kind = \"woocommerce\"",
        ));
    }
    let url = url::Url::parse(raw)
        .map_err(|e| invalid("shop.woocommerce.url", format!("`{raw}` is not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(invalid(
                "shop.woocommerce.url",
                "must be https: the API keys travel in every request (plain http is accepted only for a loopback address)",
            ))
        }
        _ => return Err(invalid("shop.woocommerce.url", "must be an https URL")),
    }
    for (key, value) in [
        ("shop.woocommerce.consumer_key", &s.consumer_key),
        ("shop.woocommerce.consumer_secret", &s.consumer_secret),
        ("shop.woocommerce.webhook_secret", &s.webhook_secret),
    ] {
        if !value.is_set() {
            return Err(invalid(key, "required for kind = \"woocommerce\""));
        }
    }
    Ok(())
}

/// `localhost`, 127.0.0.0/8 or `[::1]`.
pub(crate) fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
