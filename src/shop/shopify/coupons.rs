//! Reward coupons: `discountCodeBasicCreate` with a single-use code limited to the reward's
//! products, valid from now until the coupon's expiry, worth the reward's [`Discount`].

use crate::domain::Discount;
use crate::shop::{CouponRequest, ShopError};
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

pub(super) const CREATE: &str = "mutation RewardCode($discount: DiscountCodeBasicInput!) {
  discountCodeBasicCreate(basicCodeDiscount: $discount) {
    codeDiscountNode { id }
    userErrors { field code message }
  }
}";

/// The first Admin API version where `context` replaced the deprecated `customerSelection`.
const CONTEXT_SINCE: &str = "2025-10";

/// `{"discount": DiscountCodeBasicInput}`.
#[derive(Debug, Serialize)]
pub(super) struct Variables {
    discount: Input,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Input {
    title: String,
    code: String,
    starts_at: String,
    ends_at: String,
    usage_limit: u32,
    applies_once_per_customer: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_selection: Option<Value>,
    customer_gets: CustomerGets,
}

#[derive(Debug, Serialize)]
struct CustomerGets {
    value: Worth,
    items: Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
enum Worth {
    /// A GraphQL `Float` from 0 to 1, written from the decimal's own digits (no float on the
    /// way: `15` % is sent as `0.15`, not `0.15000000000000002`).
    Percentage(Box<RawValue>),
    DiscountAmount(Amount),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Amount {
    /// A GraphQL `Decimal`: a string.
    amount: String,
    applies_on_each_item: bool,
}

/// `gid://shopify/Product/<id>` for a plain numeric id; a product GID as it is.
pub fn product_gid(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let digits = raw.strip_prefix("gid://shopify/Product/").unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{raw}` is not a Shopify product id (a number like 8123456789001, or \
             gid://shopify/Product/8123456789001)"
        ));
    }
    Ok(format!("gid://shopify/Product/{digits}"))
}

/// The mutation's variables for `coupon`, created at `now` for a shop on `api_version`.
pub(super) fn variables(
    coupon: &CouponRequest,
    api_version: &str,
    now: DateTime<Utc>,
) -> Result<Variables, ShopError> {
    if coupon.product_ids.is_empty() {
        return Err(ShopError::Refused(format!(
            "reward {} names no products",
            coupon.reward_id
        )));
    }
    let products = coupon
        .product_ids
        .iter()
        .map(|p| product_gid(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ShopError::Refused)?;
    let value = match coupon.discount {
        Discount::Percentage(p) => {
            let ratio = (p / Decimal::ONE_HUNDRED).normalize();
            Worth::Percentage(
                RawValue::from_string(ratio.to_string()).expect("a decimal is a JSON number"),
            )
        }
        Discount::Amount(a) => Worth::DiscountAmount(Amount {
            amount: a.to_string(),
            applies_on_each_item: true,
        }),
    };
    let (context, customer_selection) = if api_version >= CONTEXT_SINCE {
        (Some(serde_json::json!({ "all": "ALL" })), None)
    } else {
        (None, Some(serde_json::json!({ "all": true })))
    };
    let input = Input {
        title: format!("Loyalty reward {} ({})", coupon.reward_id, coupon.code),
        code: coupon.code.clone(),
        starts_at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        ends_at: coupon.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        usage_limit: 1,
        applies_once_per_customer: true,
        context,
        customer_selection,
        customer_gets: CustomerGets {
            value,
            items: serde_json::json!({ "products": { "productsToAdd": products } }),
        },
    };
    Ok(Variables { discount: input })
}

/// Reads the payload: any `userErrors` is a refusal (nothing was created); a taken code is
/// [`ShopError::CodeTaken`], so the program can try again with a new code.
pub(super) fn outcome(data: &Value) -> Result<(), ShopError> {
    let payload = &data["discountCodeBasicCreate"];
    let errors = payload["userErrors"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if !errors.is_empty() {
        // `DiscountErrorCode` has both TAKEN and DUPLICATE, and the wording seen in the wild
        // varies ("Code must be unique.", "Code has already been taken"): any of them about
        // the code field means another code is worth a try. (DUPLICATE elsewhere, say a
        // product listed twice, is a refusal like any other.)
        let taken = errors.iter().any(|e| {
            let on_code = e["field"]
                .as_array()
                .and_then(|f| f.last())
                .is_some_and(|f| f == "code");
            let wording = e["message"].as_str().is_some_and(|m| {
                let m = m.to_ascii_lowercase();
                m.contains("must be unique") || m.contains("already been taken")
            });
            match e["code"].as_str() {
                Some("TAKEN") => true,
                Some("DUPLICATE") => on_code,
                _ => wording,
            }
        });
        if taken {
            return Err(ShopError::CodeTaken);
        }
        let messages: Vec<&str> = errors
            .iter()
            .map(|e| e["message"].as_str().unwrap_or("(no message)"))
            .collect();
        return Err(ShopError::Refused(messages.join("; ")));
    }
    if payload["codeDiscountNode"]["id"].is_string() {
        Ok(())
    } else {
        Err(ShopError::BadAnswer(
            "discountCodeBasicCreate returned no codeDiscountNode and no userErrors".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Email;
    use serde_json::json;

    fn request(discount: Discount, products: &[&str]) -> CouponRequest {
        CouponRequest {
            code: "MUG-7QX4-K2AB".into(),
            reward_id: "free-mug".into(),
            product_ids: products.iter().map(|p| (*p).to_owned()).collect(),
            expires_at: "2026-12-22T21:30:00Z".parse().unwrap(),
            email: Email::parse("jane@example.com").unwrap(),
            discount,
        }
    }

    fn json_of(v: Result<Variables, ShopError>) -> Value {
        serde_json::to_value(v.unwrap()).unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-11-22T21:30:00Z".parse().unwrap()
    }

    #[test]
    fn a_free_product_is_a_single_use_code_at_100_percent_for_those_products() {
        let req = request(
            Discount::default(),
            &["8123456789001", "gid://shopify/Product/42"],
        );
        let v = json_of(variables(&req, "2026-10", now()));
        assert_eq!(
            v,
            json!({"discount": {
                "title": "Loyalty reward free-mug (MUG-7QX4-K2AB)",
                "code": "MUG-7QX4-K2AB",
                "startsAt": "2026-11-22T21:30:00Z",
                "endsAt": "2026-12-22T21:30:00Z",
                "usageLimit": 1,
                "appliesOncePerCustomer": true,
                "context": {"all": "ALL"},
                "customerGets": {
                    "value": {"percentage": 1},
                    "items": {"products": {"productsToAdd": [
                        "gid://shopify/Product/8123456789001", "gid://shopify/Product/42"]}}
                }
            }})
        );
    }

    #[test]
    fn percentages_keep_their_digits_and_amounts_apply_to_each_item() {
        let pct = Discount::Percentage("15".parse().unwrap());
        let vars = variables(&request(pct, &["1"]), "2026-10", now());
        let text = serde_json::to_string(&vars.unwrap()).unwrap();
        assert!(text.contains(r#""value":{"percentage":0.15}"#), "{text}");
        let amount = Discount::Amount("5.00".parse().unwrap());
        let v = json_of(variables(&request(amount, &["1"]), "2026-10", now()));
        assert_eq!(
            v["discount"]["customerGets"]["value"],
            json!({"discountAmount": {"amount": "5.00", "appliesOnEachItem": true}})
        );
    }

    #[test]
    fn versions_before_2025_10_select_customers_the_old_way() {
        let v = json_of(variables(
            &request(Discount::default(), &["1"]),
            "2025-07",
            now(),
        ));
        assert_eq!(v["discount"]["customerSelection"], json!({"all": true}));
        assert!(v["discount"].get("context").is_none());
    }

    #[test]
    fn product_ids_that_are_not_shopify_ids_are_refused() {
        for bad in ["mug-classic", "", "gid://shopify/ProductVariant/1", "12a"] {
            assert!(product_gid(bad).is_err(), "{bad:?}");
        }
        let res = variables(&request(Discount::default(), &["mug"]), "2026-10", now());
        assert!(matches!(res, Err(ShopError::Refused(_))), "{res:?}");
        let res = variables(&request(Discount::default(), &[]), "2026-10", now());
        assert!(matches!(res, Err(ShopError::Refused(_))), "{res:?}");
    }

    #[test]
    fn user_errors_refuse_and_a_taken_code_is_told_apart() {
        let ok = json!({"discountCodeBasicCreate": {
            "codeDiscountNode": {"id": "gid://shopify/DiscountCodeNode/1"}, "userErrors": []}});
        assert!(outcome(&ok).is_ok());
        let taken = json!({"discountCodeBasicCreate": {"codeDiscountNode": null, "userErrors": [
            {"field": ["basicCodeDiscount", "code"], "code": "TAKEN", "message": "Code must be unique."}]}});
        assert!(matches!(outcome(&taken), Err(ShopError::CodeTaken)));
        for (code, message) in [
            ("DUPLICATE", "Discount code must be unique"),
            ("INVALID", "Code has already been taken"),
        ] {
            let taken = json!({"discountCodeBasicCreate": {"codeDiscountNode": null, "userErrors": [
                {"field": ["basicCodeDiscount", "code"], "code": code, "message": message}]}});
            assert!(
                matches!(outcome(&taken), Err(ShopError::CodeTaken)),
                "{code}"
            );
        }
        let product_twice = json!({"discountCodeBasicCreate": {"codeDiscountNode": null, "userErrors": [
            {"field": ["basicCodeDiscount", "customerGets", "items", "products", "productsToAdd"],
             "code": "DUPLICATE", "message": "Products to add contains duplicates"}]}});
        assert!(matches!(
            outcome(&product_twice),
            Err(ShopError::Refused(_))
        ));
        let refused = json!({"discountCodeBasicCreate": {"codeDiscountNode": null, "userErrors": [
            {"field": ["basicCodeDiscount", "endsAt"], "code": "INVALID", "message": "Ends at is invalid"}]}});
        assert!(
            matches!(outcome(&refused), Err(ShopError::Refused(m)) if m == "Ends at is invalid")
        );
        let empty =
            json!({"discountCodeBasicCreate": {"codeDiscountNode": null, "userErrors": []}});
        assert!(matches!(outcome(&empty), Err(ShopError::BadAnswer(_))));
    }
}
