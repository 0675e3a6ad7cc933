//! The generic shop contract: two signed JSON endpoints a shop developer implements
//! (`verify_url`, `coupon_url`). See the README, "Connecting a custom shop".

use super::{amount_from_json, CouponRequest, Shop, ShopError, ShopOrder};
use crate::config::Secret;
use crate::domain::{Email, OrderId, OrderNumber, OrderStatus};
use crate::signature;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub const SIGNATURE_HEADER: &str = "X-Loyalty-Signature";

#[derive(Debug, Clone)]
pub struct GenericShop {
    client: reqwest::Client,
    /// Parsed once: parsing a URL per request showed in the benchmark's profile.
    verify_url: reqwest::Url,
    coupon_url: reqwest::Url,
    secret: Secret,
    timeout_secs: u64,
}

#[derive(Serialize)]
struct VerifyRequest<'a> {
    order_number: &'a str,
    email: &'a str,
}

#[derive(Deserialize)]
struct VerifyAnswer {
    order_number: serde_json::Value,
    email: String,
    total: Box<serde_json::value::RawValue>,
    currency: String,
    status: String,
}

#[derive(Serialize)]
struct CouponBody<'a> {
    code: &'a str,
    reward_id: &'a str,
    product_ids: &'a [String],
    expires_at: String,
    email: &'a str,
    /// `{"kind":"percentage","value":"100"}` or `{"kind":"amount","value":"5.00"}`.
    discount: crate::domain::Discount,
}

impl GenericShop {
    /// Fails only if no HTTP client can be built (TLS set-up); never falls back to a client
    /// without the timeouts.
    pub fn new(
        verify_url: String,
        coupon_url: String,
        secret: Secret,
        timeout: Duration,
    ) -> Result<Self, ShopError> {
        let timeout_secs = timeout.as_secs();
        let client = super::http_client(timeout)?;
        let parse = |u: String| match reqwest::Url::parse(&u) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url),
            _ => Err(ShopError::BadUrl(u)),
        };
        Ok(GenericShop {
            client,
            verify_url: parse(verify_url)?,
            coupon_url: parse(coupon_url)?,
            secret,
            timeout_secs,
        })
    }

    async fn post_signed(
        &self,
        url: &reqwest::Url,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, ShopError> {
        let sig = signature::hmac_sha256_hex(self.secret.expose().as_bytes(), &body);
        let mut sig = reqwest::header::HeaderValue::try_from(format!("sha256={sig}"))
            .expect("hex is a valid header value");
        // Kept out of `Debug` output of the request and out of HTTP/2 header compression.
        sig.set_sensitive(true);
        self.client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sig)
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))
    }

    fn transport_error(&self, e: reqwest::Error) -> ShopError {
        if e.is_timeout() {
            ShopError::Timeout(self.timeout_secs)
        } else {
            ShopError::Unreachable(e)
        }
    }
}

/// Reads the shop's answer to a verify request (the body of a 200). Public for the fuzz target.
pub fn parse_answer(bytes: &[u8]) -> Result<ShopOrder, ShopError> {
    let a: VerifyAnswer =
        serde_json::from_slice(bytes).map_err(|e| ShopError::BadAnswer(e.to_string()))?;
    let number = match &a.order_number {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => {
            return Err(ShopError::BadAnswer(
                "order_number is not a string or number".into(),
            ))
        }
    };
    let total = amount_from_json(&a.total).map_err(ShopError::BadAnswer)?;
    let currency = a.currency.trim().to_ascii_uppercase();
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(ShopError::BadAnswer(
            "currency is not a 3-letter code".into(),
        ));
    }
    let number = OrderNumber::parse(&number).map_err(|e| ShopError::BadAnswer(e.to_string()))?;
    Ok(ShopOrder {
        id: OrderId::from(&number),
        number,
        email: Some(Email::parse(&a.email).map_err(|e| ShopError::BadAnswer(e.to_string()))?),
        total,
        currency,
        status: OrderStatus::parse(&a.status),
    })
}

impl Shop for GenericShop {
    fn find_order<'a>(
        &'a self,
        number: &'a OrderNumber,
        email: &'a Email,
    ) -> BoxFuture<'a, Result<Option<ShopOrder>, ShopError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&VerifyRequest {
                order_number: number.as_str(),
                email: email.as_str(),
            })
            .map_err(|e| ShopError::BadAnswer(e.to_string()))?;
            let res = self.post_signed(&self.verify_url, body).await?;
            let status = res.status().as_u16();
            if status == 404 {
                return Ok(None);
            }
            if status != 200 {
                return Err(ShopError::Status(status));
            }
            let bytes = res.bytes().await.map_err(|e| self.transport_error(e))?;
            parse_answer(&bytes).map(Some)
        })
    }

    fn create_coupon<'a>(
        &'a self,
        coupon: &'a CouponRequest,
    ) -> BoxFuture<'a, Result<(), ShopError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&CouponBody {
                code: &coupon.code,
                reward_id: &coupon.reward_id,
                product_ids: &coupon.product_ids,
                expires_at: coupon
                    .expires_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                email: coupon.email.as_str(),
                discount: coupon.discount,
            })
            .map_err(|e| ShopError::BadAnswer(e.to_string()))?;
            let res = self.post_signed(&self.coupon_url, body).await?;
            let status = res.status();
            if status.is_success() {
                Ok(())
            } else if status.is_client_error() {
                Err(ShopError::CouponRefused(status.as_u16()))
            } else {
                Err(ShopError::Status(status.as_u16()))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_accept_string_or_number_totals_and_ids() {
        let o = parse_answer(br#"{"order_number":1001,"email":" Jane@Example.com","total":59.90,"currency":"eur","status":"paid"}"#).unwrap();
        assert_eq!(o.number.as_str(), "1001");
        assert_eq!(
            o.total.to_string(),
            "59.90",
            "a JSON number keeps its digits"
        );
        assert_eq!(o.currency, "EUR");
        assert_eq!(o.email.as_ref().unwrap().as_str(), "jane@example.com");
        let o = parse_answer(br#"{"order_number":"A-7","email":"a@b.co","total":"42.50","currency":"USD","status":"completed"}"#).unwrap();
        assert_eq!(o.total.to_string(), "42.50");
    }

    #[test]
    fn the_shop_secret_is_redacted_in_debug_output() {
        let shop = GenericShop::new(
            "http://127.0.0.1:9/verify".into(),
            "http://127.0.0.1:9/coupons".into(),
            Secret::new("shop-secret-123"),
            Duration::from_secs(5),
        )
        .unwrap();
        let shown = format!("{shop:?}");
        assert!(
            !shown.contains("shop-secret-123") && shown.contains("[redacted]"),
            "{shown}"
        );
    }

    #[test]
    fn a_shop_url_that_is_not_http_is_refused_at_start() {
        for bad in ["not a url", "ftp://shop.example/verify", ""] {
            let made = GenericShop::new(
                bad.into(),
                "http://127.0.0.1:9/coupons".into(),
                Secret::new("s"),
                Duration::from_secs(5),
            );
            assert!(
                matches!(made, Err(ShopError::BadUrl(ref u)) if u == bad),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn garbage_answers_are_errors_not_orders() {
        for bad in [
            &b"not json"[..],
            br#"{"order_number":"1","email":"a@b.co","total":"-3","currency":"EUR","status":"paid"}"#,
            br#"{"order_number":"1","email":"nope","total":"3","currency":"EUR","status":"paid"}"#,
            br#"{"order_number":"1","email":"a@b.co","total":[1],"currency":"EUR","status":"paid"}"#,
            br#"{"order_number":"1","email":"a@b.co","total":"1","currency":"EURO","status":"paid"}"#,
            br#"{"email":"a@b.co","total":"1","currency":"EUR","status":"paid"}"#,
        ] {
            assert!(parse_answer(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
