//! WooCommerce's order JSON (REST v3, `GET /orders/<id>` and the list) read into a
//! [`ShopOrder`]: the net total after refunds in decimal, the status mapped onto
//! [`OrderStatus`], the billing email as the shop has it. Pure: no I/O.

use crate::domain::orders::parse_amount;
use crate::domain::{Email, OrderId, OrderNumber, OrderStatus};
use crate::shop::{ShopError, ShopOrder};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct WireOrder {
    id: u64,
    number: serde_json::Value,
    status: String,
    currency: String,
    total: Box<RawValue>,
    #[serde(default)]
    billing: Option<Billing>,
    #[serde(default)]
    refunds: Vec<WireRefund>,
}

#[derive(Deserialize)]
struct Billing {
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
struct WireRefund {
    /// A negative decimal string, `"-5.00"`.
    total: Box<RawValue>,
}

/// Reads one order object (the body of `GET /orders/<id>`, or an element of the list).
pub fn parse_order(bytes: &[u8]) -> Result<ShopOrder, ShopError> {
    let wire: WireOrder = serde_json::from_slice(bytes).map_err(bad)?;
    from_wire(wire)
}

/// The elements of a list answer (`GET /orders?search=…`) whose `number` is `number`, read.
/// An element that is not an order we can read is skipped unless its number matches: a
/// plugin's odd order elsewhere in the list must not hide the one asked for.
pub fn matching_orders(bytes: &[u8], number: &OrderNumber) -> Result<Vec<ShopOrder>, ShopError> {
    let list: Vec<Box<RawValue>> = serde_json::from_slice(bytes).map_err(bad)?;
    let mut found = Vec::new();
    for raw in list {
        #[derive(Deserialize)]
        struct Numbered {
            number: serde_json::Value,
        }
        let Ok(n) = serde_json::from_str::<Numbered>(raw.get()) else {
            continue;
        };
        if number_text(&n.number).is_some_and(|t| same_number(&t, number)) {
            found.push(parse_order(raw.get().as_bytes())?);
        }
    }
    Ok(found)
}

/// Whether the shop's displayed number is the one the customer typed (`#` and case aside).
pub fn same_number(shop: &str, typed: &OrderNumber) -> bool {
    OrderNumber::parse(shop).is_ok_and(|n| n.as_str().eq_ignore_ascii_case(typed.as_str()))
}

/// Where a WooCommerce status (without its `wc-` prefix) stands for points.
pub fn status(raw: &str) -> OrderStatus {
    match raw.trim().to_ascii_lowercase().as_str() {
        "processing" => OrderStatus::Paid,
        "completed" => OrderStatus::Completed,
        // Not paid yet; a block-checkout draft is a cart that has not been ordered.
        "pending" | "on-hold" | "checkout-draft" => OrderStatus::Pending,
        "cancelled" => OrderStatus::Cancelled,
        // In the bin, and may be restored: earns nothing meanwhile, but does not end the order
        // (a cancellation would, for good). An order deleted for good answers 404 instead.
        "refunded" => OrderStatus::Refunded,
        // The payment failed: "not paid", rather than "cancelled" (nobody cancelled it).
        // Statuses added by plugins land here as well: they never earn.
        other => OrderStatus::Other(other.to_owned()),
    }
}

fn from_wire(w: WireOrder) -> Result<ShopOrder, ShopError> {
    let number = number_text(&w.number)
        .ok_or_else(|| ShopError::BadAnswer("number is not a string or number".into()))?;
    let number = OrderNumber::parse(&number).map_err(bad)?;
    let mut total = crate::shop::amount_from_json(&w.total).map_err(ShopError::BadAnswer)?;
    for refund in &w.refunds {
        total -= refund_amount(&refund.total)?;
    }
    let currency = w.currency.trim().to_ascii_uppercase();
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(ShopError::BadAnswer(
            "currency is not a 3-letter code".into(),
        ));
    }
    // An order without a (valid) billing email cannot be matched to anyone.
    let email = w
        .billing
        .and_then(|b| b.email)
        .and_then(|e| Email::parse(&e).ok());
    Ok(ShopOrder {
        id: OrderId::parse(&w.id.to_string()).map_err(bad)?,
        number,
        email,
        // Refunds beyond the total (a shop's rounding) leave nothing, never less.
        total: total.max(Decimal::ZERO),
        currency,
        status: status(&w.status),
    })
}

/// The size of one refund: WooCommerce writes it negative (`"-5.00"`); the sign is dropped so
/// a shop that writes it positive is read the same.
fn refund_amount(raw: &RawValue) -> Result<Decimal, ShopError> {
    let text = raw.get().trim();
    let digits = serde_json::from_str::<String>(text).unwrap_or_else(|_| text.to_owned());
    let magnitude = digits.trim().trim_start_matches('-');
    parse_amount(magnitude)
        .map_err(|_| ShopError::BadAnswer(format!("refund total {text} is not a decimal")))
}

fn number_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn bad(e: impl std::fmt::Display) -> ShopError {
    ShopError::BadAnswer(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &[u8] = include_bytes!("../../../fixtures/woocommerce/order-excerpt.json");

    fn with(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(ORDER).unwrap();
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn the_documented_order_reads_with_its_id_number_email_and_exact_total() {
        let o = parse_order(ORDER).unwrap();
        assert_eq!(o.id.as_str(), "727");
        assert_eq!(o.number.as_str(), "727");
        assert_eq!(o.email.unwrap().as_str(), "jane@example.com");
        assert_eq!(o.total.to_string(), "42.50");
        assert_eq!(o.currency, "EUR");
        assert_eq!(o.status, OrderStatus::Paid);
    }

    #[test]
    fn refunds_come_off_the_total_in_decimal() {
        let body = with(|v| {
            v["refunds"] = serde_json::json!([
                {"id": 1, "reason": "", "total": "-5.10"},
                {"id": 2, "reason": "", "total": "-0.20"}
            ])
        });
        assert_eq!(parse_order(&body).unwrap().total.to_string(), "37.20");
        let all = with(|v| v["refunds"] = serde_json::json!([{"id": 1, "total": "-42.50"}]));
        assert_eq!(parse_order(&all).unwrap().total, Decimal::ZERO);
        let garbage = with(|v| v["refunds"] = serde_json::json!([{"id": 1, "total": "lots"}]));
        assert!(matches!(
            parse_order(&garbage),
            Err(ShopError::BadAnswer(_))
        ));
    }

    #[test]
    fn every_woocommerce_status_maps_and_only_processing_and_completed_earn() {
        for (raw, want) in [
            ("processing", OrderStatus::Paid),
            ("completed", OrderStatus::Completed),
            ("pending", OrderStatus::Pending),
            ("on-hold", OrderStatus::Pending),
            ("checkout-draft", OrderStatus::Pending),
            ("cancelled", OrderStatus::Cancelled),
            ("trash", OrderStatus::Other("trash".into())),
            ("refunded", OrderStatus::Refunded),
            ("failed", OrderStatus::Other("failed".into())),
            ("shipped", OrderStatus::Other("shipped".into())),
        ] {
            let earns = matches!(raw, "processing" | "completed");
            assert_eq!(status(raw), want, "{raw}");
            assert_eq!(status(raw).earns(), earns, "{raw}");
        }
    }

    #[test]
    fn a_missing_or_empty_billing_email_is_none() {
        for edit in [
            (|v: &mut serde_json::Value| v["billing"]["email"] = "".into()) as fn(&mut _),
            |v| v["billing"]["email"] = serde_json::Value::Null,
            |v| {
                v.as_object_mut().unwrap().remove("billing");
            },
        ] {
            assert_eq!(parse_order(&with(edit)).unwrap().email, None);
        }
    }

    #[test]
    fn a_list_answer_gives_only_the_orders_with_that_number() {
        let a = with(|v| {
            v["id"] = 900.into();
            v["number"] = "WC-1001".into();
        });
        let b = with(|v| {
            v["id"] = 1001.into();
            v["number"] = "1001".into();
        });
        let list = format!(
            "[{},{},{{\"odd\":true}}]",
            String::from_utf8(a).unwrap(),
            String::from_utf8(b).unwrap()
        );
        let n = OrderNumber::parse("#wc-1001").unwrap();
        let found = matching_orders(list.as_bytes(), &n).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id.as_str(), "900");
        assert!(matching_orders(b"{}", &n).is_err(), "not a list");
    }
}
