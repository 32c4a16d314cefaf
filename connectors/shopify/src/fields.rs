//! The fields of each stream, and how a GraphQL node becomes a row.

use chrono::{DateTime, Utc};
use dossier_connector::{ConnectorError, StreamInfo, Value};
use serde_json::Value as Json;

use crate::Resource;

/// Customer fields, in row order.
pub const CUSTOMER_FIELDS: &[(&str, &str)] = &[
    ("id", "integer"),
    ("gid", "ID"),
    ("email", "string"),
    ("phone", "string"),
    ("first_name", "string"),
    ("last_name", "string"),
    ("country", "CountryCode"),
    ("tags", "string"),
    ("number_of_orders", "integer"),
    ("amount_spent", "decimal"),
    ("currency", "CurrencyCode"),
    ("created_at", "datetime"),
    ("updated_at", "datetime"),
];

/// Order fields, in row order.
pub const ORDER_FIELDS: &[(&str, &str)] = &[
    ("id", "integer"),
    ("gid", "ID"),
    ("customer_id", "integer"),
    ("email", "string"),
    ("total_price", "decimal"),
    ("currency", "CurrencyCode"),
    ("created_at", "datetime"),
    ("updated_at", "datetime"),
    ("financial_status", "string"),
    ("fulfillment_status", "string"),
    ("line_items_quantity", "integer"),
];

pub fn names(resource: Resource) -> &'static [(&'static str, &'static str)] {
    match resource {
        Resource::Customers => CUSTOMER_FIELDS,
        Resource::Orders => ORDER_FIELDS,
    }
}

pub fn info(name: &str, resource: Resource) -> StreamInfo {
    StreamInfo::from_table(name, names(resource), &["id"], &["updated_at"])
}

/// The numeric part of a GID (`gid://shopify/Customer/42` → 42).
pub fn gid_number(gid: &str) -> Option<i64> {
    gid.rsplit('/').next()?.split('?').next()?.parse().ok()
}

fn text(v: &Json) -> Value {
    match v.as_str() {
        Some(s) => Value::Text(s.to_string()),
        None => Value::Null,
    }
}

fn decimal(v: &Json) -> Value {
    match v {
        Json::String(s) => Value::Decimal(s.clone()),
        Json::Number(n) => Value::Decimal(n.to_string()),
        _ => Value::Null,
    }
}

fn int(v: &Json) -> Value {
    match v {
        Json::Number(n) => n.as_i64().map_or(Value::Null, Value::Int),
        // UnsignedInt64 arrives as a string of digits.
        Json::String(s) => s.parse().map_or(Value::Null, Value::Int),
        _ => Value::Null,
    }
}

fn datetime(v: &Json) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A node's row, and its `(updatedAt, id)` position.
pub fn row(
    resource: Resource,
    n: &Json,
) -> Result<(Vec<Value>, DateTime<Utc>, i64), ConnectorError> {
    let gid = n["id"].as_str().unwrap_or_default();
    let id = gid_number(gid).ok_or_else(|| {
        ConnectorError::remote(
            format!("shopify returned a record without a valid id ({gid:?})"),
            false,
        )
    })?;
    let updated = datetime(&n["updatedAt"]).ok_or_else(|| {
        ConnectorError::remote(
            format!("shopify returned {gid} without a valid updatedAt"),
            false,
        )
    })?;
    let dt = |v: &Json| datetime(v).map_or(Value::Null, Value::DateTime);
    let row = match resource {
        Resource::Customers => {
            let tags = n["tags"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(Json::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            vec![
                Value::Int(id),
                Value::Text(gid.to_string()),
                text(&n["email"]),
                text(&n["phone"]),
                text(&n["firstName"]),
                text(&n["lastName"]),
                text(&n["defaultAddress"]["countryCodeV2"]),
                Value::Text(tags),
                int(&n["numberOfOrders"]),
                decimal(&n["amountSpent"]["amount"]),
                text(&n["amountSpent"]["currencyCode"]),
                dt(&n["createdAt"]),
                Value::DateTime(updated),
            ]
        }
        Resource::Orders => {
            let money = &n["totalPriceSet"]["shopMoney"];
            vec![
                Value::Int(id),
                Value::Text(gid.to_string()),
                n["customer"]["id"]
                    .as_str()
                    .and_then(gid_number)
                    .map_or(Value::Null, Value::Int),
                text(&n["email"]),
                decimal(&money["amount"]),
                text(&money["currencyCode"]),
                dt(&n["createdAt"]),
                Value::DateTime(updated),
                text(&n["displayFinancialStatus"]),
                text(&n["displayFulfillmentStatus"]),
                int(&n["subtotalLineItemsQuantity"]),
            ]
        }
    };
    Ok((row, updated, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gids() {
        assert_eq!(gid_number("gid://shopify/Customer/42"), Some(42));
        assert_eq!(gid_number("gid://shopify/Order/7?x=1"), Some(7));
        assert_eq!(gid_number("nope"), None);
    }
}
