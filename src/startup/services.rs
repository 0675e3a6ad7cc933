//! Opens the store, the shop, the program and the flow engine, checking each so that a broken
//! setting stops the start with an error naming it.

use super::StartupError;
use crate::clock::Clock;
use crate::config::{Settings, ShopKind};
use crate::domain::Points;
use crate::email::content::EmailTemplates;
use crate::email::mailroom::{Letterhead, Mailroom};
use crate::flows::Engine;
use crate::limits::{Limits, SystemClock};
use crate::metrics::Metrics;
use crate::program::{Program, Rules};
use crate::shop::{FixtureShop, GenericShop, Shop, ShopError, ShopifyShop, TimedShop, WooShop};
use crate::store::{LoyaltyStore, Pacing, SledStore};
use crate::turns::ShopWaits;
use std::path::Path;
use std::sync::Arc;

/// The store, the program and the engine, opened and checked: what every front end needs.
pub struct Services {
    pub store: Arc<SledStore>,
    pub program: Arc<Program>,
    pub engine: Arc<Engine>,
    /// Renders (and, with `email.smtp_url`, sends) member mail; present even with email off,
    /// for previews.
    pub mailroom: Arc<Mailroom>,
}

impl Services {
    /// [`Services::open_with_metrics`] counting into metrics nobody reads (the terminal chat).
    pub async fn open(settings: &Settings) -> Result<Services, StartupError> {
        Self::open_with_metrics(settings, &Metrics::default()).await
    }

    /// Opens everything, counting into `metrics`: the program's results, the limits'
    /// refusals, the shop's calls and the store's flushes.
    pub async fn open_with_metrics(
        settings: &Settings,
        metrics: &Metrics,
    ) -> Result<Services, StartupError> {
        Self::open_with_clock(settings, metrics, Arc::new(crate::clock::SystemClock)).await
    }

    /// [`Services::open_with_metrics`] with the clock verification codes and mail go by.
    pub async fn open_with_clock(
        settings: &Settings,
        metrics: &Metrics,
        clock: Arc<dyn Clock>,
    ) -> Result<Services, StartupError> {
        let store = open_store(settings)?;
        store.observe_flushes(metrics.flush_observer());
        let store = Arc::new(store);
        let dyn_store: Arc<dyn LoyaltyStore> = store.clone();
        let limits =
            Limits::new(&settings.limits, Arc::new(SystemClock::new())).count_refusals(metrics);
        let mailroom = Arc::new(build_mailroom(settings, &store)?);
        let mut program = Program::new(
            dyn_store,
            build_shop(settings, metrics).await?,
            settings.catalogue(),
            rules(settings),
        )
        .with_limits(Arc::new(limits))
        .with_metrics(metrics.clone())
        .with_clock(Arc::clone(&clock));
        let email = &settings.email;
        if email.enabled() {
            program = program.with_mail(email.policy());
            if email.verifies() {
                program = program.with_verification(mailroom.clone());
            }
            let scheduled = store
                .ensure_statement_schedule(&email.policy(), clock.now())
                .map_err(|source| StartupError::Store {
                    path: settings.store.path.clone(),
                    source,
                })?;
            if scheduled > 0 {
                tracing::info!(
                    members = scheduled,
                    "scheduled the first statement of members who joined before email"
                );
            }
        }
        let program = Arc::new(program);
        let engine = Arc::new(build_engine(Arc::clone(&program), settings)?);
        let recovered = program
            .recover_pending_coupons()
            .await
            .map_err(StartupError::Recovery)?;
        if recovered > 0 {
            tracing::warn!(
                coupons = recovered,
                "restored points of interrupted redemptions"
            );
        }
        Ok(Services {
            store,
            program,
            engine,
            mailroom,
        })
    }
}

/// The store of `[store]`, opened alone: for [`Services::open`], and for the commands that work
/// on a stopped store (export, import, segments).
pub fn open_store(settings: &Settings) -> Result<SledStore, StartupError> {
    let cache_bytes = settings.store.cache_capacity_mb * 1024 * 1024;
    let pacing = Pacing {
        gap: settings.store.flush_gap,
        batch: settings.store.flush_batch,
    };
    let store = SledStore::open_tuned(
        &settings.store.path,
        cache_bytes,
        pacing,
        settings.store.durability,
    )
    .map_err(|source| StartupError::Store {
        path: settings.store.path.clone(),
        source,
    })?;
    let unwritten_mb = settings.store.max_unwritten_events_mb as usize;
    store.set_max_unwritten_event_bytes(unwritten_mb * 1024 * 1024);
    store.set_mail_policy(settings.email.policy());
    Ok(store)
}

/// The templates (checked like the flow files: a mistake stops the start naming the file), the
/// sender, the DKIM key and the SMTP URL, checked now; the store's unsubscribe-link key.
fn build_mailroom(settings: &Settings, store: &SledStore) -> Result<Mailroom, StartupError> {
    let dir = settings.flows_dir.as_deref();
    let templates = EmailTemplates::load(dir).map_err(|e| StartupError::Flows {
        path: dir.map_or_else(|| "(built-in email templates)".into(), |d| d.join("email")),
        source: Box::new(e),
    })?;
    let link_key = store
        .mail_link_key()
        .map_err(|source| StartupError::Store {
            path: settings.store.path.clone(),
            source,
        })?;
    let head = Letterhead::from_settings(settings);
    Mailroom::new(&settings.email, templates, head, link_key)
        .map_err(|e| StartupError::Email(Box::new(e)))
}

fn build_engine(program: Arc<Program>, settings: &Settings) -> Result<Engine, StartupError> {
    let (dir, locale) = (settings.flows_dir.as_deref(), settings.program.locale);
    Engine::load(program, dir, locale.as_str()).map_err(|e| StartupError::Flows {
        path: dir.map_or_else(|| "(built-in flows)".into(), Path::to_path_buf),
        source: Box::new(e),
    })
}

fn rules(settings: &Settings) -> Rules {
    let p = &settings.program;
    Rules {
        signup_bonus: Points(p.signup_bonus),
        points_per_currency_unit: p.points_per_currency_unit,
        coupon_valid_days: p.coupon_valid_days,
        currency: p.currency.to_string(),
        auto_credit: p.auto_credit,
    }
}

/// The configured shop, its calls timed (`loyalty_shop_request_seconds`) and marked as waits so
/// that a Messenger turn gives its place up while the shop is slow (`turns.rs`). Warmed up
/// before the first customer: refused credentials stop the start naming their settings.
async fn build_shop(settings: &Settings, metrics: &Metrics) -> Result<Arc<dyn Shop>, StartupError> {
    let s = &settings.shop;
    let shop: Arc<dyn Shop> = match s.kind {
        ShopKind::Fixture => {
            let shop = match &s.orders_file {
                Some(path) => FixtureShop::new(path.clone()),
                None => FixtureShop::built_in(),
            };
            // Read it once now: a broken file stops the start, not a customer's claim.
            let orders = shop.load_all().map_err(StartupError::Shop)?;
            tracing::info!(orders = orders.len(), "fixture shop loaded");
            Arc::new(shop)
        }
        ShopKind::Generic => Arc::new(
            GenericShop::new(
                s.verify_url.clone(),
                s.coupon_url.clone(),
                s.secret.clone(),
                s.timeout,
            )
            .map_err(StartupError::Shop)?,
        ),
        ShopKind::Shopify => {
            check_shopify_products(settings)?;
            let shop = ShopifyShop::new(&s.shopify, s.timeout).map_err(StartupError::Shop)?;
            shop.warm_up()
                .await
                .map_err(|source| StartupError::ShopSettings {
                    key: ShopifyShop::credential_keys(&s.shopify).to_owned(),
                    source,
                })?;
            Arc::new(shop)
        }
        ShopKind::Woocommerce => {
            let shop = WooShop::new(&s.woocommerce, s.timeout).map_err(StartupError::Shop)?;
            shop.warm_up()
                .await
                .map_err(|source| StartupError::ShopSettings {
                    key: WooShop::setting_at_fault(&source).to_owned(),
                    source,
                })?;
            Arc::new(shop)
        }
    };
    let timed = TimedShop::new(shop, metrics);
    Ok(Arc::new(ShopWaits(Arc::new(timed))))
}

/// A Shopify coupon is limited to products by id: each reward must name Shopify products.
fn check_shopify_products(settings: &Settings) -> Result<(), StartupError> {
    for (i, reward) in settings.rewards.iter().enumerate() {
        let bad = if reward.product_ids.is_empty() {
            Some("names no products".to_owned())
        } else {
            reward
                .product_ids
                .iter()
                .find_map(|p| crate::shop::shopify::product_gid(p).err())
        };
        if let Some(problem) = bad {
            return Err(StartupError::ShopSettings {
                key: format!("rewards[{i}].product_ids (reward `{}`)", reward.id),
                source: ShopError::Refused(problem),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[tokio::test]
    async fn the_configured_bound_on_unwritten_events_reaches_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let env = [
            ("LOYALTY__STORE__PATH", dir.path().to_str().unwrap()),
            ("LOYALTY__STORE__MAX_UNWRITTEN_EVENTS_MB", "3"),
        ];
        let settings = Settings::from_toml(
            include_str!("../../config.toml"),
            Path::new("config.toml"),
            env.map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
        .unwrap();
        let services = Services::open(&settings).await.unwrap();
        assert_eq!(services.store.max_unwritten_event_bytes(), 3 * 1024 * 1024);
    }
}
