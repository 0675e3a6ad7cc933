//! Rate limits against abuse, above all order-number guessing: per member on claims (a tight
//! budget for failed ones) and redemptions, and per client address on the HTTP routes that
//! claim, redeem or administer. In memory, per process, with bounded memory; the clock is
//! injectable so tests can move time by hand.
//!
//! [`Limits`] holds every limiter. The program applies the member budgets (so every channel
//! shares them), the HTTP layer the per-address ones. Nothing here knows about HTTP (beyond
//! reading a request's client address, [`client_ip`]) or the store. Keys, defaults and
//! reasons: `docs/limits.md`.

mod client_ip;
mod limiter;
mod settings;

pub use client_ip::{client_ip, parse_trusted_proxies, TrustedProxies};
pub use limiter::{Clock, Limited, Limiter, ManualClock, Rate, SystemClock};
pub use settings::{LimitSettings, RateSettings};

use crate::domain::MemberId;
use std::net::IpAddr;
use std::sync::Arc;

/// Route data: the largest request body the route reads (`server.max_body_bytes`, or
/// `messenger.max_body_bytes` for the webhook), so a 413 can name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

pub struct Limits {
    pub claims_per_member: Limiter<MemberId>,
    pub failed_claims_per_member: Limiter<MemberId>,
    pub redemptions_per_member: Limiter<MemberId>,
    pub claims_per_ip: Limiter<IpAddr>,
    pub redemptions_per_ip: Limiter<IpAddr>,
    pub admin_per_ip: Limiter<IpAddr>,
    trusted_proxies: TrustedProxies,
}

impl Limits {
    /// The limits of validated `settings` (an invalid proxy list is treated as empty).
    pub fn new(settings: &LimitSettings, clock: Arc<dyn Clock>) -> Self {
        let keys = settings.max_tracked_keys;
        let member = |r: RateSettings| Limiter::new(r.rate(), Arc::clone(&clock), keys);
        let ip = |r: RateSettings| Limiter::new(r.rate(), Arc::clone(&clock), keys);
        Limits {
            claims_per_member: member(settings.claims_per_member),
            failed_claims_per_member: member(settings.failed_claims_per_member),
            redemptions_per_member: member(settings.redemptions_per_member),
            claims_per_ip: ip(settings.claims_per_ip),
            redemptions_per_ip: ip(settings.redemptions_per_ip),
            admin_per_ip: ip(settings.admin_per_ip),
            trusted_proxies: settings.trusted_proxies.clone(),
        }
    }

    /// No limit at all: for tools and tests that build a program by hand.
    pub fn unlimited() -> Self {
        let off = RateSettings {
            max: 0,
            window_secs: 1,
        };
        let settings = LimitSettings {
            claims_per_member: off,
            failed_claims_per_member: off,
            redemptions_per_member: off,
            claims_per_ip: off,
            redemptions_per_ip: off,
            admin_per_ip: off,
            ..LimitSettings::default()
        };
        Self::new(&settings, Arc::new(SystemClock::new()))
    }

    /// Counts every refusal into `metrics`, by the limit's key under `[limits]`.
    pub fn count_refusals(mut self, metrics: &crate::metrics::Metrics) -> Self {
        let limiters = [
            (&mut self.claims_per_member, "claims_per_member"),
            (
                &mut self.failed_claims_per_member,
                "failed_claims_per_member",
            ),
            (&mut self.redemptions_per_member, "redemptions_per_member"),
        ];
        for (limiter, name) in limiters {
            limiter.count_refusals(metrics.rate_limited(name));
        }
        let per_ip = [
            (&mut self.claims_per_ip, "claims_per_ip"),
            (&mut self.redemptions_per_ip, "redemptions_per_ip"),
            (&mut self.admin_per_ip, "admin_per_ip"),
        ];
        for (limiter, name) in per_ip {
            limiter.count_refusals(metrics.rate_limited(name));
        }
        self
    }

    /// Takes a claim from both member budgets: every claim, and a failed one reserved up
    /// front (give it back with [`Limits::claim_did_not_fail`]). Reserving makes concurrent
    /// guesses count too; a refusal takes nothing.
    pub fn start_claim(&self, member: MemberId) -> Result<(), Limited> {
        self.claims_per_member.acquire(&member)?;
        if let Err(refused) = self.failed_claims_per_member.acquire(&member) {
            self.claims_per_member.refund(&member);
            return Err(refused);
        }
        Ok(())
    }

    /// Returns the failed-claim token reserved by [`Limits::start_claim`].
    pub fn claim_did_not_fail(&self, member: MemberId) {
        self.failed_claims_per_member.refund(&member);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(clock: Arc<ManualClock>) -> Limits {
        let settings = LimitSettings {
            claims_per_member: RateSettings {
                max: 4,
                window_secs: 60,
            },
            failed_claims_per_member: RateSettings {
                max: 2,
                window_secs: 60,
            },
            ..LimitSettings::default()
        };
        Limits::new(&settings, clock)
    }

    #[test]
    fn failed_claims_run_out_before_successful_ones() {
        let clock = Arc::new(ManualClock::default());
        let l = limits(clock.clone());
        let m = MemberId(7);
        // Two wrong guesses use up the failed-claim budget...
        for _ in 0..2 {
            assert!(l.start_claim(m).is_ok());
        }
        let refused = l.start_claim(m).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(30));
        // ...while a refusal takes nothing from the overall budget: 30 s later it is full
        // again (4 per minute) and only successes are left to spend it.
        clock.advance(Duration::from_secs(30));
        for i in 0..4 {
            assert!(l.start_claim(m).is_ok(), "successful claim {i}");
            l.claim_did_not_fail(m);
        }
        assert!(l.start_claim(m).is_err(), "4 claims per minute in all");
    }

    #[test]
    fn successful_claims_give_their_reservation_back() {
        let l = limits(Arc::new(ManualClock::default()));
        let m = MemberId(8);
        for _ in 0..4 {
            assert!(l.start_claim(m).is_ok());
            l.claim_did_not_fail(m);
        }
        assert!(
            l.start_claim(m).is_err(),
            "the overall budget still applies"
        );
    }

    #[test]
    fn each_refusal_is_counted_under_the_limit_that_refused() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = crate::metrics::Metrics::register(&mut registry);
        let l = limits(Arc::new(ManualClock::default())).count_refusals(&metrics);
        let m = MemberId(9);
        for _ in 0..3 {
            let _ = l.start_claim(m);
        }
        let text = crate::metrics::encode(&registry).unwrap();
        let count = |limit: &str| {
            let series = format!("loyalty_rate_limited_total{{limit=\"{limit}\"}} ");
            let line = text.lines().find(|l| l.starts_with(&series)).unwrap();
            line[series.len()..].to_owned()
        };
        assert_eq!(count("failed_claims_per_member"), "1");
        assert_eq!(count("claims_per_member"), "0");
    }

    #[test]
    fn unlimited_limits_never_refuse() {
        let l = Limits::unlimited();
        for _ in 0..1000 {
            assert!(l.start_claim(MemberId(1)).is_ok());
            assert!(l
                .admin_per_ip
                .acquire(&"127.0.0.1".parse().unwrap())
                .is_ok());
        }
    }
}
