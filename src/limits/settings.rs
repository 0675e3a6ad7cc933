//! The `[limits]` section of `config.toml`: every budget as `max` events per `window_secs`,
//! with the defaults and the reasoning documented in `docs/limits.md`. Checked at start-up with
//! errors naming the key, like the rest of the settings.

use super::limiter::Rate;
use serde::Deserialize;
use std::time::Duration;

/// `max` events per `window_secs` for one key; `max = 0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSettings {
    pub max: u32,
    pub window_secs: u64,
}

impl RateSettings {
    const fn new(max: u32, window_secs: u64) -> Self {
        RateSettings { max, window_secs }
    }

    pub fn rate(self) -> Rate {
        Rate {
            max: self.max,
            window: Duration::from_secs(self.window_secs),
        }
    }
}

/// The longest window: a week. Longer ones would mostly punish forgotten typos.
const MAX_WINDOW_SECS: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Comma-separated addresses or CIDR ranges (`10.0.0.0/8`) of our own reverse proxies,
    /// whose `X-Forwarded-For` is believed. Empty: the TCP peer is the client.
    pub trusted_proxies: super::TrustedProxies,
    /// Keys each limit remembers at most; past it idle keys, then the oldest, are forgotten.
    pub max_tracked_keys: usize,
    /// Every order claim by one member, whatever its outcome.
    pub claims_per_member: RateSettings,
    /// Claims of an order that is unknown, someone else's, or claimed by someone else.
    pub failed_claims_per_member: RateSettings,
    /// Every redemption by one member.
    pub redemptions_per_member: RateSettings,
    /// `POST /manychat/claim` per client address (ManyChat's servers: all customers at once).
    pub claims_per_ip: RateSettings,
    /// `POST /manychat/redeem` per client address.
    pub redemptions_per_ip: RateSettings,
    /// Every `/admin` request per client address, with or without a valid token.
    pub admin_per_ip: RateSettings,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            trusted_proxies: super::TrustedProxies::default(),
            max_tracked_keys: 50_000,
            claims_per_member: RateSettings::new(30, 3600),
            failed_claims_per_member: RateSettings::new(5, 1800),
            redemptions_per_member: RateSettings::new(20, 3600),
            claims_per_ip: RateSettings::new(300, 60),
            redemptions_per_ip: RateSettings::new(120, 60),
            admin_per_ip: RateSettings::new(60, 60),
        }
    }
}

impl LimitSettings {
    /// Every budget with its key, for validation and documentation tests.
    pub fn rates(&self) -> [(&'static str, RateSettings); 6] {
        [
            ("limits.claims_per_member", self.claims_per_member),
            (
                "limits.failed_claims_per_member",
                self.failed_claims_per_member,
            ),
            ("limits.redemptions_per_member", self.redemptions_per_member),
            ("limits.claims_per_ip", self.claims_per_ip),
            ("limits.redemptions_per_ip", self.redemptions_per_ip),
            ("limits.admin_per_ip", self.admin_per_ip),
        ]
    }

    /// The first mistake as (key, problem).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, problem: &str| (key.to_owned(), problem.to_owned());
        if !(100..=10_000_000).contains(&self.max_tracked_keys) {
            return Err(bad(
                "limits.max_tracked_keys",
                "must be between 100 and 10000000",
            ));
        }
        for (key, rate) in self.rates() {
            if rate.window_secs == 0 || rate.window_secs > MAX_WINDOW_SECS {
                return Err(bad(
                    &format!("{key}.window_secs"),
                    "must be between 1 and 604800 (a week)",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_proxies(list: &str) -> Result<LimitSettings, toml::de::Error> {
        toml::from_str(&format!("trusted_proxies = {list:?}"))
    }

    #[test]
    fn trusted_proxies_take_cidr_ranges_and_a_bad_entry_names_the_key_and_the_entry() {
        let ok = with_proxies("10.0.0.0/8, ::1/128, 192.0.2.7").unwrap();
        assert_eq!(ok.trusted_proxies.ranges().len(), 3);
        let e = with_proxies("10.0.0.0/8, 10.0.0.0/33")
            .unwrap_err()
            .to_string();
        assert!(e.contains("trusted_proxies"), "{e}");
        assert!(e.contains("`10.0.0.0/33`"), "{e}");
    }
}
