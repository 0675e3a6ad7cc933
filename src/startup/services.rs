//! Opens the store, the shop, the program and the flow engine, checking each so that a broken
//! setting stops the start with an error naming it.

use super::StartupError;
use crate::config::{Settings, ShopKind};
use crate::domain::Points;
use crate::flows::Engine;
use crate::limits::{Limits, SystemClock};
use crate::metrics::Metrics;
use crate::program::{Program, Rules};
use crate::shop::{FixtureShop, GenericShop, Shop, TimedShop};
use crate::store::{LoyaltyStore, Pacing, SledStore};
use crate::turns::ShopWaits;
use std::path::Path;
use std::sync::Arc;

/// The store, the program and the engine, opened and checked: what every front end needs.
pub struct Services {
    pub store: Arc<SledStore>,
    pub program: Arc<Program>,
    pub engine: Arc<Engine>,
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
        let store = open_store(settings)?;
        store.observe_flushes(metrics.flush_observer());
        let store = Arc::new(store);
        let dyn_store: Arc<dyn LoyaltyStore> = store.clone();
        let limits =
            Limits::new(&settings.limits, Arc::new(SystemClock::new())).count_refusals(metrics);
        let program = Arc::new(
            Program::new(
                dyn_store,
                build_shop(settings, metrics)?,
                settings.catalogue(),
                rules(settings),
            )
            .with_limits(Arc::new(limits))
            .with_metrics(metrics.clone()),
        );
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
    Ok(store)
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
    }
}

/// The configured shop, its calls timed (`loyalty_shop_request_seconds`) and marked as waits so
/// that a Messenger turn gives its place up while the shop is slow (`turns.rs`).
fn build_shop(settings: &Settings, metrics: &Metrics) -> Result<Arc<dyn Shop>, StartupError> {
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
    };
    let timed = TimedShop::new(shop, metrics);
    Ok(Arc::new(ShopWaits(Arc::new(timed))))
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
