//! The fields of each stream, and how a Stripe object becomes a row.

use chrono::{DateTime, Utc};
use dossier_connector::{ConnectorError, StreamInfo, Value};
use serde_json::Value as Json;

use crate::Resource;

/// Customer fields, in row order.
pub const CUSTOMER_FIELDS: &[(&str, &str)] = &[
    ("id", "string"),
    ("email", "string"),
    ("name", "string"),
    ("first_name", "string"),
    ("last_name", "string"),
    ("phone", "string"),
    ("description", "string"),
    ("currency", "string"),
    ("balance", "integer"),
    ("delinquent", "boolean"),
    ("country", "string"),
    ("city", "string"),
    ("locale", "string"),
    ("created", "datetime"),
    ("livemode", "boolean"),
    ("metadata", "json"),
];

/// Charge fields, in row order.
pub const CHARGE_FIELDS: &[(&str, &str)] = &[
    ("id", "string"),
    ("customer", "string"),
    ("email", "string"),
    ("amount", "integer"),
    ("amount_decimal", "decimal"),
    ("currency", "string"),
    ("amount_captured", "integer"),
    ("amount_refunded", "integer"),
    ("status", "string"),
    ("paid", "boolean"),
    ("refunded", "boolean"),
    ("description", "string"),
    ("payment_method_type", "string"),
    ("created", "datetime"),
    ("livemode", "boolean"),
    ("metadata", "json"),
];

pub fn names(resource: Resource) -> &'static [(&'static str, &'static str)] {
    match resource {
        Resource::Customers => CUSTOMER_FIELDS,
        Resource::Charges => CHARGE_FIELDS,
    }
}

pub fn info(name: &str, resource: Resource) -> StreamInfo {
    StreamInfo::from_table(name, names(resource), &["id"], &["created"])
}

/// Currencies without a minor unit (amounts are already whole units), per Stripe's docs.
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];
/// Currencies with three decimals.
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

/// An amount in the smallest unit, written exactly in the currency's unit (`1999` USD → `19.99`).
pub fn major_units(amount: i64, currency: &str) -> String {
    let currency = currency.to_ascii_lowercase();
    let places = if ZERO_DECIMAL.contains(&currency.as_str()) {
        0
    } else if THREE_DECIMAL.contains(&currency.as_str()) {
        3
    } else {
        2
    };
    if places == 0 {
        return amount.to_string();
    }
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    let unit = 10u64.pow(places);
    format!(
        "{sign}{}.{:0width$}",
        abs / unit,
        abs % unit,
        width = places as usize
    )
}

fn text(j: &Json) -> Value {
    match j {
        Json::String(s) if !s.is_empty() => Value::Text(s.clone()),
        _ => Value::Null,
    }
}

fn int(j: &Json) -> Value {
    j.as_i64().map_or(Value::Null, Value::Int)
}

fn boolean(j: &Json) -> Value {
    j.as_bool().map_or(Value::Null, Value::Bool)
}

fn json(j: &Json) -> Value {
    if j.is_null() {
        Value::Null
    } else {
        Value::Json(j.clone())
    }
}

/// A Unix time in seconds.
pub fn time(seconds: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(seconds, 0)
}

/// What the reader needs of an object besides its row.
pub struct Record {
    pub row: Vec<Value>,
    pub id: String,
    pub created: i64,
}

/// An object of `resource` as a row.
pub fn row(resource: Resource, o: &Json) -> Result<Record, ConnectorError> {
    let bad = |what: &str| {
        ConnectorError::remote(
            format!("stripe returned a {} without {what}", resource.object()),
            false,
        )
    };
    if o["object"].as_str() != Some(resource.object()) {
        return Err(ConnectorError::remote(
            format!(
                "stripe returned {:?} where a {} was expected",
                o["object"].as_str().unwrap_or("an unknown object"),
                resource.object()
            ),
            false,
        ));
    }
    let id = o["id"].as_str().ok_or_else(|| bad("an id"))?.to_string();
    let created = o["created"].as_i64().ok_or_else(|| bad("`created`"))?;
    let created_at = time(created).map_or(Value::Null, Value::DateTime);
    let row = match resource {
        Resource::Customers => {
            let name = o["name"].as_str().unwrap_or_default().trim();
            let (first, last) = match name.split_once(' ') {
                Some((f, l)) => (f.trim(), l.trim()),
                None => (name, ""),
            };
            let locale = &o["preferred_locales"][0];
            vec![
                Value::Text(id.clone()),
                text(&o["email"]),
                text(&o["name"]),
                text(&Json::String(first.into())),
                text(&Json::String(last.into())),
                text(&o["phone"]),
                text(&o["description"]),
                text(&o["currency"]),
                int(&o["balance"]),
                boolean(&o["delinquent"]),
                text(&o["address"]["country"]),
                text(&o["address"]["city"]),
                text(locale),
                created_at,
                boolean(&o["livemode"]),
                json(&o["metadata"]),
            ]
        }
        Resource::Charges => {
            let currency = o["currency"].as_str().unwrap_or_default();
            let amount = o["amount"].as_i64();
            let email = match &o["billing_details"]["email"] {
                Json::String(s) if !s.is_empty() => text(&o["billing_details"]["email"]),
                _ => text(&o["receipt_email"]),
            };
            vec![
                Value::Text(id.clone()),
                text(&o["customer"]),
                email,
                amount.map_or(Value::Null, Value::Int),
                amount.map_or(Value::Null, |a| Value::Decimal(major_units(a, currency))),
                text(&o["currency"]),
                int(&o["amount_captured"]),
                int(&o["amount_refunded"]),
                text(&o["status"]),
                boolean(&o["paid"]),
                boolean(&o["refunded"]),
                text(&o["description"]),
                text(&o["payment_method_details"]["type"]),
                created_at,
                boolean(&o["livemode"]),
                json(&o["metadata"]),
            ]
        }
    };
    Ok(Record { row, id, created })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_in_major_units() {
        assert_eq!(major_units(1999, "usd"), "19.99");
        assert_eq!(major_units(5, "EUR"), "0.05");
        assert_eq!(major_units(-250, "eur"), "-2.50");
        assert_eq!(major_units(500, "jpy"), "500");
        assert_eq!(major_units(1234, "kwd"), "1.234");
    }
}
