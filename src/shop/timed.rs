//! [`TimedShop`]: any [`Shop`], each call timed into the `loyalty_shop_request_seconds`
//! histogram by operation, failures and timeouts included (a slow shop is what it shows).

use super::{CouponRequest, Shop, ShopError, ShopOrder};
use crate::domain::{Email, OrderId, OrderNumber};
use crate::metrics::Metrics;
use futures_util::future::BoxFuture;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::Arc;
use tokio::time::Instant;

pub struct TimedShop {
    shop: Arc<dyn Shop>,
    find_order: Histogram,
    create_coupon: Histogram,
    order_by_id: Histogram,
}

impl TimedShop {
    pub fn new(shop: Arc<dyn Shop>, metrics: &Metrics) -> Self {
        TimedShop {
            shop,
            find_order: metrics.shop_requests("find_order"),
            create_coupon: metrics.shop_requests("create_coupon"),
            order_by_id: metrics.shop_requests("order_by_id"),
        }
    }
}

/// Awaits `call` and observes how long it took; a call dropped half-way is not observed.
async fn timed<T>(histogram: &Histogram, call: BoxFuture<'_, T>) -> T {
    let started = Instant::now();
    let out = call.await;
    histogram.observe(started.elapsed().as_secs_f64());
    out
}

impl Shop for TimedShop {
    fn find_order<'a>(
        &'a self,
        number: &'a OrderNumber,
        email: &'a Email,
    ) -> BoxFuture<'a, Result<Option<ShopOrder>, ShopError>> {
        Box::pin(timed(&self.find_order, self.shop.find_order(number, email)))
    }

    fn create_coupon<'a>(
        &'a self,
        coupon: &'a CouponRequest,
    ) -> BoxFuture<'a, Result<(), ShopError>> {
        Box::pin(timed(&self.create_coupon, self.shop.create_coupon(coupon)))
    }

    fn order_by_id<'a>(
        &'a self,
        id: &'a OrderId,
    ) -> BoxFuture<'a, Result<Option<ShopOrder>, ShopError>> {
        Box::pin(timed(&self.order_by_id, self.shop.order_by_id(id)))
    }

    fn warm_up(&self) -> BoxFuture<'_, Result<(), ShopError>> {
        self.shop.warm_up()
    }

    fn ids_are_numbers(&self) -> bool {
        self.shop.ids_are_numbers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    struct Slow;

    impl Shop for Slow {
        fn find_order<'a>(
            &'a self,
            _: &'a OrderNumber,
            _: &'a Email,
        ) -> BoxFuture<'a, Result<Option<ShopOrder>, ShopError>> {
            Box::pin(async {
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                Err(ShopError::Timeout(1))
            })
        }

        fn create_coupon<'a>(
            &'a self,
            _: &'a CouponRequest,
        ) -> BoxFuture<'a, Result<(), ShopError>> {
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_call_is_observed_under_its_operation_failures_included() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let shop = TimedShop::new(Arc::new(Slow), &metrics);
        let (number, email) = (
            OrderNumber::parse("1001").unwrap(),
            Email::parse("ana@example.com").unwrap(),
        );
        assert!(shop.find_order(&number, &email).await.is_err());
        let text = crate::metrics::encode(&registry).unwrap();
        let line = |series: &str| {
            text.lines()
                .find(|l| l.starts_with(series))
                .unwrap_or_else(|| panic!("{series} in\n{text}"))
                .to_owned()
        };
        let count = r#"loyalty_shop_request_seconds_count{operation="find_order"}"#;
        assert_eq!(line(count), format!("{count} 1"));
        let fast = r#"loyalty_shop_request_seconds_bucket{operation="find_order",le="0.025"}"#;
        assert_eq!(line(fast), format!("{fast} 0"), "30 ms is above 25 ms");
        let slower = r#"loyalty_shop_request_seconds_bucket{operation="find_order",le="0.05"}"#;
        assert_eq!(line(slower), format!("{slower} 1"));
    }
}
