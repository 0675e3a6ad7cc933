//! Orders: found by display name (`orders(first: 2, query: $q)`, `$q = "name:#1001"`) or read
//! again by GID (`order(id: $id)`), and mapped onto [`ShopOrder`]. The number typed by a
//! customer reaches Shopify only as a variable, never as query text.

use crate::domain::{Email, OrderId, OrderNumber, OrderStatus};
use crate::shop::{amount_from_json, ShopError, ShopOrder};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

pub(super) const BY_NAME: &str = "query OrderByName($q: String!) {
  orders(first: 2, query: $q) {
    nodes {
      id name email test cancelledAt displayFinancialStatus
      currentTotalPriceSet { shopMoney { amount currencyCode } }
    }
  }
}";

pub(super) const BY_ID: &str = "query OrderById($id: ID!) {
  order(id: $id) {
    id name email test cancelledAt displayFinancialStatus
    currentTotalPriceSet { shopMoney { amount currencyCode } }
  }
}";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Node {
    id: String,
    name: String,
    email: Option<String>,
    #[serde(default)]
    test: bool,
    cancelled_at: Option<String>,
    display_financial_status: Option<String>,
    current_total_price_set: MoneyBag,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MoneyBag {
    shop_money: Money,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Money {
    amount: Box<RawValue>,
    currency_code: String,
}

/// The search strings to try, in order: the default `#` prefix first, then the bare number for
/// shops that print their numbers without it. Search syntax special characters are escaped,
/// although an [`OrderNumber`] holds none.
pub(super) fn searches(number: &OrderNumber) -> [String; 2] {
    let n = escape(number.as_str());
    [format!("name:#{n}"), format!("name:{n}")]
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, ':' | '\\' | '(' | ')' | '"' | ' ') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The one node of `data.orders.nodes` whose name is the number, with or without `#`. Shopify's
/// search is loose (`name:1001` may also find `#10010`); only an exact name is the order.
pub(super) fn pick(data: &Value, number: &OrderNumber) -> Result<Option<ShopOrder>, ShopError> {
    let nodes = data["orders"]["nodes"]
        .as_array()
        .ok_or_else(|| ShopError::BadAnswer("no orders.nodes in the answer".into()))?;
    let wanted = number.as_str();
    let exact = nodes.iter().find(|n| {
        n["name"].as_str().is_some_and(|name| {
            let name = name.strip_prefix('#').unwrap_or(name);
            name.eq_ignore_ascii_case(wanted)
        })
    });
    exact.map(parse).transpose()
}

/// `data.order`, or `None` when Shopify has no such order (or hides it: older than 60 days
/// without `read_all_orders`).
pub(super) fn by_id(data: &Value) -> Result<Option<ShopOrder>, ShopError> {
    match &data["order"] {
        Value::Null => Ok(None),
        node => parse(node).map(Some),
    }
}

fn parse(node: &Value) -> Result<ShopOrder, ShopError> {
    let bad = |what: String| ShopError::BadAnswer(format!("order: {what}"));
    let node = Node::deserialize(node).map_err(|e| bad(e.to_string()))?;
    let money = &node.current_total_price_set.shop_money;
    let total = amount_from_json(&money.amount).map_err(bad)?;
    let email = match node.email.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(e) => Some(Email::parse(e).map_err(|e| bad(e.to_string()))?),
    };
    let status = status(
        node.test,
        node.cancelled_at.is_some(),
        node.display_financial_status.as_deref(),
    );
    Ok(ShopOrder {
        id: OrderId::parse(&node.id).map_err(|e| bad(e.to_string()))?,
        number: OrderNumber::parse(&node.name).map_err(|e| bad(e.to_string()))?,
        email,
        total,
        currency: money.currency_code.trim().to_ascii_uppercase(),
        status,
    })
}

/// Test orders and cancelled orders never earn, whatever was paid; then only `PAID` and
/// `PARTIALLY_REFUNDED` earn (on what is left: `currentTotalPriceSet`).
fn status(test: bool, cancelled: bool, financial: Option<&str>) -> OrderStatus {
    if test {
        return OrderStatus::Test;
    }
    if cancelled {
        return OrderStatus::Cancelled;
    }
    match financial.unwrap_or("UNKNOWN") {
        "PAID" | "PARTIALLY_REFUNDED" => OrderStatus::Paid,
        "REFUNDED" => OrderStatus::Refunded,
        "PENDING" | "AUTHORIZED" | "PARTIALLY_PAID" => OrderStatus::Pending,
        "VOIDED" => OrderStatus::Cancelled,
        other => OrderStatus::Other(other.to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str) -> Value {
        json!({"id": "gid://shopify/Order/5712345678901", "name": name,
            "email": "Jane@Example.com", "test": false, "cancelledAt": null,
            "displayFinancialStatus": "PAID",
            "currentTotalPriceSet": {"shopMoney": {"amount": "42.50", "currencyCode": "EUR"}}})
    }

    fn number(n: &str) -> OrderNumber {
        OrderNumber::parse(n).unwrap()
    }

    #[test]
    fn only_a_node_with_exactly_that_name_is_the_order() {
        let data = json!({"orders": {"nodes": [node("#10010"), node("#1001")]}});
        let found = pick(&data, &number("1001")).unwrap().unwrap();
        assert_eq!(found.number.as_str(), "1001");
        assert_eq!(found.id.as_str(), "gid://shopify/Order/5712345678901");
        assert_eq!(found.total.to_string(), "42.50");
        assert_eq!(found.email.unwrap().as_str(), "jane@example.com");
        let bare = json!({"orders": {"nodes": [node("1001")]}});
        assert!(pick(&bare, &number("1001")).unwrap().is_some());
        let near = json!({"orders": {"nodes": [node("#10010"), node("#1001-B")]}});
        assert!(pick(&near, &number("1001")).unwrap().is_none());
        assert!(pick(&json!({"orders": {"nodes": []}}), &number("1001"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn states_map_to_what_earns() {
        for (test, cancelled, financial, want) in [
            (false, false, Some("PAID"), OrderStatus::Paid),
            (false, false, Some("PARTIALLY_REFUNDED"), OrderStatus::Paid),
            (false, false, Some("REFUNDED"), OrderStatus::Refunded),
            (false, false, Some("PENDING"), OrderStatus::Pending),
            (false, false, Some("AUTHORIZED"), OrderStatus::Pending),
            (false, false, Some("VOIDED"), OrderStatus::Cancelled),
            (
                false,
                false,
                Some("EXPIRED"),
                OrderStatus::Other("expired".into()),
            ),
            (false, false, None, OrderStatus::Other("unknown".into())),
            (true, false, Some("PAID"), OrderStatus::Test),
            (false, true, Some("PAID"), OrderStatus::Cancelled),
        ] {
            assert_eq!(status(test, cancelled, financial), want, "{financial:?}");
        }
    }

    #[test]
    fn a_null_email_is_withheld_and_money_keeps_its_digits() {
        let mut n = node("#1001");
        n["email"] = Value::Null;
        n["currentTotalPriceSet"]["shopMoney"]["amount"] = json!("123456789012.35");
        let order = by_id(&json!({ "order": n })).unwrap().unwrap();
        assert_eq!(order.email, None);
        assert_eq!(order.total.to_string(), "123456789012.35");
        assert_eq!(by_id(&json!({"order": null})).unwrap(), None);
        let mut garbage = node("#1001");
        garbage["currentTotalPriceSet"]["shopMoney"]["amount"] = json!("lots");
        assert!(matches!(
            by_id(&json!({ "order": garbage })),
            Err(ShopError::BadAnswer(_))
        ));
    }

    #[test]
    fn searches_put_the_number_after_name_and_escape_search_syntax() {
        assert_eq!(searches(&number("#1001")), ["name:#1001", "name:1001"]);
        assert_eq!(escape(r#"a:b(c)"d\ e"#), r#"a\:b\(c\)\"d\\\ e"#);
    }
}
