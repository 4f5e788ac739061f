//! The lease table in DynamoDB: one item per shard under the pipeline's
//! namespace (`"<pipeline>#<stream>"`), every write conditional on the
//! lease counter the writer last saw (and on being the owner, for an
//! owner's writes), so that an instance that lost a lease finds out at its
//! next write and writes nothing.

use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue, ScalarAttributeType,
    TableStatus,
};
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use super::{Lease, LeaseError};

mod pipeline;

const NAMESPACE: &str = "namespace";
const SHARD: &str = "shard";

/// Where the table is and whose leases these are.
#[derive(Clone, Debug)]
pub struct TableOptions {
    pub table: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// `"<pipeline>#<stream>"`: several pipelines and streams share a table.
    pub namespace: String,
    /// This instance.
    pub worker: String,
}

/// The leases of one pipeline's stream.
#[derive(Clone, Debug)]
pub struct LeaseTable {
    client: Client,
    options: TableOptions,
    /// The region, and the endpoint when one is set (without what a URL
    /// may hold of secrets), for messages.
    place: String,
}

impl LeaseTable {
    /// Connects, and creates the table (on-demand billing) when it is
    /// missing, waiting until it is active.
    pub async fn open(options: TableOptions) -> Result<Self, LeaseError> {
        let table = Self::connect(options).await;
        table.ensure_table().await?;
        Ok(table)
    }

    /// Connects to a table that exists: [`LeaseError::Missing`] if it does
    /// not, and nothing is created (for `spillway leases`, which only
    /// looks).
    pub async fn open_existing(options: TableOptions) -> Result<Self, LeaseError> {
        let table = Self::connect(options).await;
        match table.client.describe_table().table_name(table.name()).send().await {
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Err(LeaseError::Missing {
                    table: table.options.table.clone(),
                    place: table.place.clone(),
                })
            }
            Err(err) => return Err(table.classify(&err, "-")),
        }
        table.wait_until_active().await?;
        Ok(table)
    }

    async fn connect(options: TableOptions) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(5))
                .connect_timeout(Duration::from_secs(3))
                .build(),
        );
        if let Some(region) = &options.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &options.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk = loader.load().await;
        let region = sdk
            .region()
            .map_or_else(|| "no region".to_owned(), |r| r.as_ref().to_owned());
        let place = match &options.endpoint {
            Some(endpoint) => format!("{region} at {}", spillway_destinations::redact::url_for_logs(endpoint)),
            None => region,
        };
        Self {
            client: Client::new(&sdk),
            options,
            place,
        }
    }

    pub fn worker(&self) -> &str {
        &self.options.worker
    }

    /// The table's name, for messages.
    pub fn name(&self) -> &str {
        &self.options.table
    }

    /// Where the table is: its region, and the endpoint when one is set
    /// (without user information or query), for messages.
    pub fn place(&self) -> &str {
        &self.place
    }

    async fn ensure_table(&self) -> Result<(), LeaseError> {
        let name = &self.options.table;
        match self.client.describe_table().table_name(name).send().await {
            Ok(found) if found.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) => return Ok(()),
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                let created = self
                    .client
                    .create_table()
                    .table_name(name)
                    .billing_mode(BillingMode::PayPerRequest)
                    .attribute_definitions(attribute(NAMESPACE))
                    .attribute_definitions(attribute(SHARD))
                    .key_schema(key(NAMESPACE, KeyType::Hash))
                    .key_schema(key(SHARD, KeyType::Range))
                    .send()
                    .await;
                if let Err(err) = created {
                    // Another instance may have created it at the same time.
                    if !err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) {
                        return Err(self.classify(&err, "-"));
                    }
                }
            }
            Err(err) => return Err(self.classify(&err, "-")),
        }
        self.wait_until_active().await
    }

    async fn wait_until_active(&self) -> Result<(), LeaseError> {
        let name = &self.options.table;
        for _ in 0..120 {
            let found = self
                .client
                .describe_table()
                .table_name(name)
                .send()
                .await
                .map_err(|err| self.classify(&err, "-"))?;
            if found.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(LeaseError::Unavailable {
            table: name.clone(),
            place: self.place.clone(),
            detail: "the table did not become active within 60 s".into(),
        })
    }

    /// Every lease of the namespace, read consistently.
    pub async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let items = self
            .client
            .query()
            .table_name(&self.options.table)
            .consistent_read(true)
            .key_condition_expression("#ns = :ns")
            .expression_attribute_names("#ns", NAMESPACE)
            .expression_attribute_values(":ns", s(&self.options.namespace))
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|err| self.classify(&err, "-"))?;
        items
            .iter()
            .filter(|item| !pipeline::is_pipeline_item(item))
            .map(|item| self.lease_of(item))
            .collect()
    }

    /// Adds a shard's lease, unowned, unless it exists. Returns whether it
    /// was added.
    pub async fn add(&self, shard: &str, parents: &[String]) -> Result<bool, LeaseError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.options.table)
            .item(NAMESPACE, s(&self.options.namespace))
            .item(SHARD, s(shard))
            .item("counter", AttributeValue::N("0".into()))
            .item("ended", AttributeValue::Bool(false))
            .item("parents", AttributeValue::L(parents.iter().map(|p| s(p)).collect()))
            .condition_expression("attribute_not_exists(#shard)")
            .expression_attribute_names("#shard", SHARD)
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(err) if is_condition_failed(&err) => Ok(false),
            Err(err) => Err(self.classify(&err, shard)),
        }
    }

    /// Takes `lease` for this instance, on condition that nobody wrote it
    /// since it was read (it was expired, released or stolen fairly).
    pub async fn take(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.update(
            lease,
            "SET #owner = :me, #counter = :next, renewed_at = :now",
            false,
            Landed::Owned,
        )
        .await
    }

    /// Renews a lease this instance holds.
    pub async fn renew(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.update(lease, "SET #counter = :next, renewed_at = :now", true, Landed::Owned)
            .await
    }

    /// Saves the shard's checkpoint state (and whether it has ended) under a
    /// lease this instance holds; fails with [`LeaseError::Lost`] if it no
    /// longer does, so a stale owner cannot move a checkpoint.
    pub async fn checkpoint(&self, lease: &Lease, state: &str, ended: bool) -> Result<Lease, LeaseError> {
        let request = self.fenced(
            lease,
            "SET #counter = :next, renewed_at = :now, #state = :state, #ended = :ended",
            true,
        );
        let request = request
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#ended", "ended")
            .expression_attribute_values(":state", s(state))
            .expression_attribute_values(":ended", AttributeValue::Bool(ended));
        let landed = Landed::Checkpoint {
            state: state.to_owned(),
            ended,
        };
        self.finish(request, lease, landed).await
    }

    /// Gives a lease up (at shutdown): another instance takes it at its
    /// next look, without waiting for it to expire.
    pub async fn release(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.update(lease, "SET #counter = :next REMOVE #owner", true, Landed::Released)
            .await
    }

    async fn update(&self, lease: &Lease, expression: &str, owned: bool, landed: Landed) -> Result<Lease, LeaseError> {
        let request = self.fenced(lease, expression, owned);
        self.finish(request, lease, landed).await
    }

    /// An update of `lease` conditional on its counter (and, for the
    /// owner's own writes, on the owner).
    fn fenced(
        &self,
        lease: &Lease,
        expression: &str,
        owned: bool,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        let condition = if owned {
            "#counter = :counter AND #owner = :me"
        } else {
            "#counter = :counter"
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.options.table)
            .key(NAMESPACE, s(&self.options.namespace))
            .key(SHARD, s(&lease.shard))
            .update_expression(expression)
            .condition_expression(condition)
            .expression_attribute_names("#counter", "counter")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":counter", AttributeValue::N(lease.counter.to_string()))
            .expression_attribute_values(":next", AttributeValue::N((lease.counter + 1).to_string()))
            .return_values(ReturnValue::AllNew);
        if expression.contains(":me") || owned {
            request = request.expression_attribute_values(":me", s(&self.options.worker));
        }
        if expression.contains(":now") {
            request = request.expression_attribute_values(":now", s(&chrono::Utc::now().to_rfc3339()));
        }
        request
    }

    async fn finish(
        &self,
        request: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        lease: &Lease,
        landed: Landed,
    ) -> Result<Lease, LeaseError> {
        match self.send(request, lease).await {
            Err(LeaseError::Lost { .. }) => {
                let now = self.landed_before(lease, &landed).await?;
                if matches!(landed, Landed::Released) {
                    return Ok(now);
                }
                // The write landed when its first attempt was sent, which
                // may be long before the caller's clock started the proof
                // it takes from this write: a renewal sent now makes that
                // proof true (it moves the counter again, so others' view
                // of the lease starts again too).
                let renewal = self.fenced(&now, "SET #counter = :next, renewed_at = :now", true);
                self.send(renewal, &now).await
            }
            other => other,
        }
    }

    /// Sends an update; a failed condition is [`LeaseError::Lost`].
    async fn send(
        &self,
        request: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        lease: &Lease,
    ) -> Result<Lease, LeaseError> {
        match request.send().await {
            Ok(out) => match out.attributes() {
                Some(item) => self.lease_of(item),
                None => Err(LeaseError::Corrupt {
                    table: self.options.table.clone(),
                    shard: lease.shard.clone(),
                    detail: "no attributes returned".into(),
                }),
            },
            Err(err) if is_condition_failed(&err) => Err(LeaseError::Lost {
                shard: lease.shard.clone(),
            }),
            Err(err) => Err(self.classify(&err, &lease.shard)),
        }
    }

    /// After a failed condition: whether the item shows this very write,
    /// landed by an earlier attempt whose answer was lost (the SDK's retry
    /// of a timed-out request, or a write whose answer never came): then it
    /// is this write's result, not a lost lease. Only this instance sets
    /// `owner` to itself or removes it from a lease it holds, and its
    /// writes of one lease go one at a time, so the item at the next
    /// counter with this write's effect is this write's.
    async fn landed_before(&self, lease: &Lease, landed: &Landed) -> Result<Lease, LeaseError> {
        let lost = || LeaseError::Lost {
            shard: lease.shard.clone(),
        };
        let found = self
            .client
            .get_item()
            .table_name(&self.options.table)
            .consistent_read(true)
            .key(NAMESPACE, s(&self.options.namespace))
            .key(SHARD, s(&lease.shard))
            .send()
            .await
            .map_err(|err| self.classify(&err, &lease.shard))?;
        let Some(item) = found.item() else {
            return Err(lost());
        };
        let now = self.lease_of(item)?;
        let mine = now.held_by(&self.options.worker);
        let effect = match landed {
            Landed::Owned => mine,
            Landed::Checkpoint { state, ended } => {
                mine && now.state.as_deref() == Some(state.as_str()) && now.ended == *ended
            }
            Landed::Released => now.owner.is_none(),
        };
        if now.counter == lease.counter + 1 && effect {
            tracing::info!(shard = %lease.shard, "a lease write whose answer was lost had landed");
            Ok(now)
        } else {
            Err(lost())
        }
    }

    fn lease_of(&self, item: &std::collections::HashMap<String, AttributeValue>) -> Result<Lease, LeaseError> {
        let shard = item.get(SHARD).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let corrupt = |detail: &str| LeaseError::Corrupt {
            table: self.options.table.clone(),
            shard: shard.clone(),
            detail: detail.to_owned(),
        };
        let counter = item
            .get("counter")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| corrupt("no counter"))?;
        let parents = match item.get("parents") {
            None => vec![],
            Some(AttributeValue::L(list)) => list
                .iter()
                .map(|v| v.as_s().cloned().map_err(|_| corrupt("a parent is not a string")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(corrupt("parents is not a list")),
        };
        Ok(Lease {
            owner: item.get("owner").and_then(|v| v.as_s().ok()).cloned(),
            counter,
            state: item.get("state").and_then(|v| v.as_s().ok()).cloned(),
            parents,
            ended: item
                .get("ended")
                .and_then(|v| v.as_bool().ok())
                .copied()
                .unwrap_or(false),
            // Informational: one the owner's clock wrote oddly is shown as
            // none, not refused.
            renewed_at: item
                .get("renewed_at")
                .and_then(|v| v.as_s().ok())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc)),
            shard,
        })
    }

    fn classify<E>(&self, err: &SdkError<E, HttpResponse>, _shard: &str) -> LeaseError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let table = self.options.table.clone();
        if let Some(problem) = spillway_destinations::aws_credentials::find_in_chain(err) {
            return LeaseError::Refused {
                table,
                detail: problem.to_string(),
            };
        }
        match err {
            SdkError::ServiceError(service) => {
                let inner = service.err();
                let code = inner.code().unwrap_or("Unknown");
                let detail = format!("{code}: {}", inner.message().unwrap_or_default());
                let status = service.raw().status().as_u16();
                if status >= 500 || status == 429 || code.contains("Throughput") || code.contains("Throttl") {
                    LeaseError::Unavailable {
                        table,
                        place: self.place.clone(),
                        detail,
                    }
                } else {
                    LeaseError::Refused { table, detail }
                }
            }
            SdkError::TimeoutError(_) => LeaseError::Unavailable {
                table,
                place: self.place.clone(),
                detail: "the request timed out".into(),
            },
            _ => {
                // The error and its causes, one line, without what a URL
                // may hold of secrets (and without the SDK's debug dump
                // that `DisplayErrorContext` appends).
                let text = causes(err);
                LeaseError::Unavailable {
                    table,
                    place: self.place.clone(),
                    detail: spillway_destinations::redact::text_for_logs(&text).into_owned(),
                }
            }
        }
    }
}

/// What a write leaves in the item, to recognise it there
/// ([`LeaseTable::landed_before`]).
enum Landed {
    /// A take or a renewal: this instance owns it.
    Owned,
    /// A checkpoint: this instance owns it with this state.
    Checkpoint { state: String, ended: bool },
    /// A release: nobody owns it.
    Released,
}

/// `err: its cause: its cause's cause ...`, each said once.
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let said = inner.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = inner.source();
    }
    text
}

fn is_condition_failed<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    err.as_service_error()
        .is_some_and(|e| e.code() == Some("ConditionalCheckFailedException"))
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("name and type are set")
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("name and type are set")
}
