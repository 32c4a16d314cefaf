//! The fields of each stream, and how a WooCommerce record becomes a row.

use chrono::{DateTime, Utc};
use dossier_connector::{ConnectorError, StreamInfo, Value};
use dossier_core::value::parse_datetime;
use serde_json::Value as Json;

use crate::Resource;

/// Customer fields, in row order.
pub const CUSTOMER_FIELDS: &[(&str, &str)] = &[
    ("id", "integer"),
    ("email", "string"),
    ("first_name", "string"),
    ("last_name", "string"),
    ("username", "string"),
    ("role", "string"),
    ("company", "string"),
    ("phone", "string"),
    ("city", "string"),
    ("country", "string"),
    ("is_paying_customer", "boolean"),
    ("date_created", "datetime"),
    ("date_modified", "datetime"),
];

/// Order fields, in row order.
pub const ORDER_FIELDS: &[(&str, &str)] = &[
    ("id", "integer"),
    ("number", "string"),
    ("customer_id", "integer"),
    ("billing_email", "string"),
    ("status", "string"),
    ("currency", "string"),
    ("total", "decimal"),
    ("line_items_count", "integer"),
    ("payment_method", "string"),
    ("date_created", "datetime"),
    ("date_modified", "datetime"),
    ("date_paid", "datetime"),
    ("date_completed", "datetime"),
];

pub fn names(resource: Resource) -> &'static [(&'static str, &'static str)] {
    match resource {
        Resource::Customers => CUSTOMER_FIELDS,
        Resource::Orders => ORDER_FIELDS,
    }
}

pub fn info(name: &str, resource: Resource) -> StreamInfo {
    let cursors: &[&str] = match resource {
        Resource::Customers => &[],
        Resource::Orders => &["date_modified"],
    };
    StreamInfo::from_table(name, names(resource), &["id"], cursors)
}

/// A `*_gmt` date (written without a zone) as UTC.
pub fn gmt(v: &Json) -> Option<DateTime<Utc>> {
    v.as_str()
        .filter(|s| !s.is_empty())
        .and_then(parse_datetime)
}

fn text(v: &Json) -> Value {
    match v {
        Json::String(s) if !s.is_empty() => Value::Text(s.clone()),
        Json::Number(n) => Value::Text(n.to_string()),
        _ => Value::Null,
    }
}

fn date(v: &Json) -> Value {
    gmt(v).map_or(Value::Null, Value::DateTime)
}

/// A record as read: its row, id and `date_modified_gmt`.
pub struct Record {
    pub row: Vec<Value>,
    pub id: i64,
    pub modified: Option<DateTime<Utc>>,
}

/// A record's row, its id and its `date_modified_gmt`.
pub fn row(resource: Resource, r: &Json) -> Result<Record, ConnectorError> {
    let id = r["id"].as_i64().ok_or_else(|| {
        ConnectorError::remote("woocommerce returned a record without an integer id", false)
    })?;
    let modified = gmt(&r["date_modified_gmt"]);
    let row = match resource {
        Resource::Customers => vec![
            Value::Int(id),
            text(&r["email"]),
            text(&r["first_name"]),
            text(&r["last_name"]),
            text(&r["username"]),
            text(&r["role"]),
            text(&r["billing"]["company"]),
            text(&r["billing"]["phone"]),
            text(&r["billing"]["city"]),
            text(&r["billing"]["country"]),
            r["is_paying_customer"]
                .as_bool()
                .map_or(Value::Null, Value::Bool),
            date(&r["date_created_gmt"]),
            modified.map_or(Value::Null, Value::DateTime),
        ],
        Resource::Orders => vec![
            Value::Int(id),
            text(&r["number"]),
            // A guest order has customer_id 0: it links by billing email instead.
            r["customer_id"]
                .as_i64()
                .filter(|c| *c > 0)
                .map_or(Value::Null, Value::Int),
            text(&r["billing"]["email"]),
            text(&r["status"]),
            text(&r["currency"]),
            match &r["total"] {
                Json::String(s) if !s.is_empty() => Value::Decimal(s.clone()),
                Json::Number(n) => Value::Decimal(n.to_string()),
                _ => Value::Null,
            },
            r["line_items"]
                .as_array()
                .map_or(Value::Null, |l| Value::Int(l.len() as i64)),
            text(&r["payment_method"]),
            date(&r["date_created_gmt"]),
            modified.map_or(Value::Null, Value::DateTime),
            date(&r["date_paid_gmt"]),
            date(&r["date_completed_gmt"]),
        ],
    };
    Ok(Record { row, id, modified })
}
