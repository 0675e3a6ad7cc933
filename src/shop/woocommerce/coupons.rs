//! The body of `POST /wp-json/wc/v3/coupons` for a reward, and what the shop's answer means.
//! Pure: no I/O.

use super::client::RestError;
use crate::domain::Discount;
use crate::shop::{CouponRequest, ShopError};
use serde::{Deserialize, Serialize};

/// WordPress's error code for a coupon code the shop has already (any case: codes are stored
/// lower-case).
pub const CODE_TAKEN: &str = "woocommerce_rest_coupon_code_already_exists";

#[derive(Debug, Serialize, PartialEq)]
pub struct CouponBody<'a> {
    pub code: &'a str,
    /// `percent` or `fixed_product`: both off each of the reward's products.
    pub discount_type: &'static str,
    /// A decimal string, even for a percentage.
    pub amount: String,
    /// What the owner sees next to the code in WooCommerce → Marketing → Coupons.
    pub description: String,
    /// No other coupon in the same cart.
    pub individual_use: bool,
    pub product_ids: Vec<u64>,
    pub usage_limit: u32,
    pub usage_limit_per_user: u32,
    /// A free product is one item, not every unit of it in the cart.
    pub limit_usage_to_x_items: u32,
    pub email_restrictions: [&'a str; 1],
    /// UTC, `YYYY-MM-DDTHH:MM:SS` without an offset (WordPress's REST date format); the
    /// shop checks it to the second.
    pub date_expires_gmt: String,
}

/// The body for `coupon`. A product id that is not WooCommerce's (a number) is refused: the
/// coupon would otherwise apply to no product or, worse, to the wrong one.
pub fn body(coupon: &CouponRequest) -> Result<CouponBody<'_>, ShopError> {
    let product_ids = coupon
        .product_ids
        .iter()
        .map(|id| product_id(id))
        .collect::<Result<Vec<_>, _>>()?;
    let (discount_type, amount) = match coupon.discount {
        Discount::Percentage(p) => ("percent", p),
        Discount::Amount(a) => ("fixed_product", a),
    };
    Ok(CouponBody {
        code: &coupon.code,
        discount_type,
        amount: amount.to_string(),
        description: format!("Loyalty reward {}", coupon.reward_id),
        individual_use: true,
        product_ids,
        usage_limit: 1,
        usage_limit_per_user: 1,
        limit_usage_to_x_items: 1,
        email_restrictions: [coupon.email.as_str()],
        date_expires_gmt: coupon.expires_at.format("%Y-%m-%dT%H:%M:%S").to_string(),
    })
}

/// A reward's product id for WooCommerce: its numeric product (or variation) id.
pub fn product_id(raw: &str) -> Result<u64, ShopError> {
    let t = raw.trim();
    match t.parse::<u64>() {
        Ok(id) if id > 0 && t.bytes().all(|b| b.is_ascii_digit()) => Ok(id),
        _ => Err(ShopError::Refused(format!(
            "reward product id `{raw}` is not a WooCommerce product id (a number)"
        ))),
    }
}

/// A coupon as `GET /coupons?code=…` lists it: what tells ours from someone else's.
#[derive(Debug, Deserialize)]
pub struct ExistingCoupon {
    code: String,
    #[serde(default)]
    product_ids: Vec<u64>,
    #[serde(default)]
    email_restrictions: Vec<String>,
}

impl ExistingCoupon {
    /// Same code (the shop keeps it lower-case), products and member email as `wanted`.
    pub fn is(&self, wanted: &CouponBody<'_>) -> bool {
        let mut ours = wanted.product_ids.clone();
        let mut theirs = self.product_ids.clone();
        ours.sort_unstable();
        theirs.sort_unstable();
        self.code.eq_ignore_ascii_case(wanted.code)
            && ours == theirs
            && self.email_restrictions.len() == 1
            && self.email_restrictions[0].eq_ignore_ascii_case(wanted.email_restrictions[0])
    }
}

/// The list answer of `GET /coupons?code=…`.
pub fn existing(bytes: &[u8]) -> Result<Vec<ExistingCoupon>, ShopError> {
    serde_json::from_slice(bytes).map_err(|e| ShopError::BadAnswer(e.to_string()))
}

/// What a non-2xx answer to the coupon POST means.
pub fn refusal(status: u16, body: &[u8]) -> ShopError {
    match status {
        401 | 403 => ShopError::Unauthorized(status),
        400..=499 => match serde_json::from_slice::<RestError>(body) {
            Ok(e) if e.code == CODE_TAKEN => ShopError::CodeTaken,
            Ok(e) if !e.message.trim().is_empty() => ShopError::Refused(e.message),
            Ok(e) => ShopError::Refused(e.code),
            Err(_) => ShopError::CouponRefused(status),
        },
        _ => ShopError::Status(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Email;
    use chrono::TimeZone;
    use rust_decimal::Decimal;

    fn request(discount: Discount, products: &[&str]) -> CouponRequest {
        CouponRequest {
            code: "BEANS-7QX4-K2".into(),
            reward_id: "beans".into(),
            product_ids: products.iter().map(|p| p.to_string()).collect(),
            expires_at: chrono::Utc
                .with_ymd_and_hms(2026, 12, 22, 21, 30, 0)
                .unwrap(),
            email: Email::parse("jane@example.com").unwrap(),
            discount,
        }
    }

    /// The documented request (fixtures/woocommerce/coupon-request.json), field by field.
    #[test]
    fn an_amount_reward_gives_the_documented_fixed_product_body() {
        let documented: serde_json::Value = serde_json::from_slice(include_bytes!(
            "../../../fixtures/woocommerce/coupon-request.json"
        ))
        .unwrap();
        let amount = Discount::Amount(Decimal::new(500, 2));
        let ours = serde_json::to_value(body(&request(amount, &["93"])).unwrap()).unwrap();
        for key in [
            "code",
            "discount_type",
            "amount",
            "individual_use",
            "product_ids",
            "usage_limit",
            "usage_limit_per_user",
            "limit_usage_to_x_items",
            "email_restrictions",
            "date_expires_gmt",
        ] {
            let want = if key == "code" {
                serde_json::json!("BEANS-7QX4-K2")
            } else {
                documented[key].clone()
            };
            assert_eq!(ours[key], want, "{key}");
        }
    }

    #[test]
    fn the_default_reward_is_a_hundred_percent_off() {
        let req = request(Discount::default(), &["93", " 94 "]);
        let b = body(&req).unwrap();
        assert_eq!((b.discount_type, b.amount.as_str()), ("percent", "100"));
        assert_eq!(b.product_ids, vec![93, 94]);
    }

    #[test]
    fn a_product_id_that_is_not_a_number_is_refused_before_asking() {
        for bad in [
            "mug-classic",
            "gid://shopify/Product/1",
            "",
            "0",
            "-3",
            "+4",
        ] {
            let req = request(Discount::default(), &[bad]);
            assert!(matches!(body(&req), Err(ShopError::Refused(_))), "{bad:?}");
        }
    }

    #[test]
    fn answers_are_told_apart() {
        let taken = br#"{"code":"woocommerce_rest_coupon_code_already_exists","message":"The coupon code already exists","data":{"status":400}}"#;
        assert!(matches!(refusal(400, taken), ShopError::CodeTaken));
        let invalid = br#"{"code":"rest_invalid_param","message":"Invalid parameter(s): discount_type","data":{"status":400}}"#;
        assert!(
            matches!(refusal(400, invalid), ShopError::Refused(m) if m == "Invalid parameter(s): discount_type")
        );
        assert!(matches!(refusal(401, taken), ShopError::Unauthorized(401)));
        assert!(matches!(refusal(403, b""), ShopError::Unauthorized(403)));
        assert!(matches!(
            refusal(422, b"<html>"),
            ShopError::CouponRefused(422)
        ));
        assert!(matches!(refusal(502, b""), ShopError::Status(502)));
        assert!(matches!(refusal(302, b""), ShopError::Status(302)));
    }
}
