//! A synthetic connector: `customers` records and 1 to 3 `payments` per customer, generated
//! deterministically, read incrementally by id. It exists to compare the plugin boundary
//! with the same connector compiled in (tests, `benches/plugin_boundary.rs`), and to make a
//! plugin panic on purpose (`panic_at_batch`).

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use dossier_connector::{
    Batch, BatchStream, Catalog, Connector, ConnectorError, FieldInfo, Problem, ReadRequest,
    StreamInfo, StreamState, Value,
};
use futures::StreamExt as _;
use schemars::JsonSchema;
use serde::Deserialize;

/// Generator settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How many customers to generate (payments are about twice as many).
    pub customers: u64,
    /// Panic while producing this batch (0-based), to test that a plugin's panic is contained.
    #[serde(default)]
    pub panic_at_batch: Option<u64>,
}

/// What a stream generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// One record per customer.
    Customers,
    /// One to three payments per customer.
    Payments,
}

/// One stream.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stream {
    /// `customers` or `payments`.
    pub entity: Entity,
}

/// The generator.
#[derive(Debug)]
pub struct GeneratorConnector {
    config: Config,
}

const CUSTOMER_FIELDS: &[&str] = &["id", "email", "first_name", "country", "plan", "updated_at"];
const PAYMENT_FIELDS: &[&str] = &["id", "customer_id", "amount", "currency", "created_at"];
const COUNTRIES: &[&str] = &["FR", "DE", "US", "GB", "ES", "IT", "JP"];

fn at(seconds: u64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + seconds as i64, 0)
        .single()
        .unwrap_or_default()
}

fn info(name: &str, entity: Entity) -> StreamInfo {
    let (fields, types): (&[&str], &[&str]) = match entity {
        Entity::Customers => (
            CUSTOMER_FIELDS,
            &[
                "integer", "string", "string", "string", "string", "datetime",
            ],
        ),
        Entity::Payments => (
            PAYMENT_FIELDS,
            &["integer", "integer", "float", "string", "datetime"],
        ),
    };
    StreamInfo {
        name: name.to_string(),
        fields: fields
            .iter()
            .zip(types)
            .map(|(n, t)| FieldInfo {
                name: n.to_string(),
                source_type: t.to_string(),
                unsupported: None,
            })
            .collect(),
        primary_key: vec!["id".into()],
        cursor_candidates: vec!["id".into()],
        sampled: false,
    }
}

/// The rows of customer `c` (0-based) for `entity`.
fn rows_of(entity: Entity, c: u64, out: &mut Vec<Vec<Value>>) {
    match entity {
        Entity::Customers => out.push(vec![
            Value::Int(c as i64 + 1),
            Value::Text(format!("user{}@example.com", c + 1)),
            Value::Text(format!("User{}", c + 1)),
            Value::Text(COUNTRIES[(c % COUNTRIES.len() as u64) as usize].to_string()),
            Value::Text(if c.is_multiple_of(3) { "pro" } else { "basic" }.to_string()),
            Value::DateTime(at(c)),
        ]),
        Entity::Payments => {
            for k in 0..(1 + c % 3) {
                let id = c * 3 + k + 1;
                out.push(vec![
                    Value::Int(id as i64),
                    Value::Int(c as i64 + 1),
                    Value::Float(((id * 7919) % 20_000) as f64 / 100.0),
                    Value::Text("eur".into()),
                    Value::DateTime(at(c * 10 + k)),
                ]);
            }
        }
    }
}

#[async_trait::async_trait]
impl Connector for GeneratorConnector {
    type Config = Config;
    type Stream = Stream;

    const NAME: &'static str = "generator";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    async fn connect(config: Config) -> Result<Self, ConnectorError> {
        Ok(Self { config })
    }

    async fn check(&self, _streams: &[(String, Stream)]) -> Vec<Problem> {
        vec![]
    }

    async fn discover(&self) -> Result<Catalog, ConnectorError> {
        Ok(Catalog {
            streams: vec![
                info("customers", Entity::Customers),
                info("payments", Entity::Payments),
            ],
        })
    }

    async fn describe(&self, name: &str, stream: &Stream) -> Result<StreamInfo, ConnectorError> {
        Ok(info(name, stream.entity))
    }

    fn read(self: Arc<Self>, request: ReadRequest<Stream>) -> BatchStream {
        let entity = request.stream.entity;
        let fields: Arc<Vec<String>> = Arc::new(
            match entity {
                Entity::Customers => CUSTOMER_FIELDS,
                Entity::Payments => PAYMENT_FIELDS,
            }
            .iter()
            .map(|s| s.to_string())
            .collect(),
        );
        // The state is the number of customers already read.
        let start = request
            .state
            .as_ref()
            .and_then(|s| s.0.get("customers_read"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let per_batch = request.batch_size.max(1) as u64;
        let total = self.config.customers;
        let panic_at = self.config.panic_at_batch;
        futures::stream::unfold((start, 0u64), move |(next, batch_no)| {
            let fields = fields.clone();
            async move {
                if next >= total {
                    return None;
                }
                if panic_at == Some(batch_no) {
                    panic!("generator: told to panic at batch {batch_no}");
                }
                let end = (next + per_batch).min(total);
                let mut rows = Vec::with_capacity((end - next) as usize);
                for c in next..end {
                    rows_of(entity, c, &mut rows);
                }
                let batch = Batch {
                    fields,
                    rows,
                    state: StreamState(serde_json::json!({ "customers_read": end })),
                };
                Some((Ok(batch), (end, batch_no + 1)))
            }
        })
        .boxed()
    }
}
