//! The columns of an AWS Glue table, as Firehose's record format
//! conversion reads them (`[format.glue]`).
//!
//! [`GlueCatalog::connect`] reads the table at start: a table that cannot
//! be read (Glue unreachable, no such table, access denied, a column type
//! spillway cannot write) stops `run` in one line, before anything is
//! read. With `version = "LATEST"` the table is read again when a batch is
//! about to be encoded and `refresh_seconds` have passed since the last
//! read ([`GlueCatalog::schema`]): a changed table applies from that batch
//! on, never to part of one. A read that fails then keeps the columns in
//! force (and says so); the next is tried after another period.
//!
//! The calls are GetTable (`LATEST`) and GetTableVersion (a version id),
//! the permissions Firehose's role needs too.

pub mod config;
mod types;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_glue::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_glue::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use spillway_transforms::format::parquet::Schema;

pub use config::{GlueConfig, GlueSettings, GlueVersion};
pub use types::{GlueColumnsError, GLUE_TYPES};

/// Why a Glue table cannot be read, by what the operator does about it.
#[derive(Debug, thiserror::Error)]
pub enum GlueError {
    #[error("glue table {table} not found ({detail})")]
    NotFound { table: String, detail: String },
    /// Glue cannot be reached (after the SDK's own retries).
    #[error("cannot read glue table {table}: cannot reach glue: {detail}")]
    Unreachable { table: String, detail: String },
    /// Access denied, an invalid request, no credentials.
    #[error("cannot read glue table {table}: {detail}")]
    Refused { table: String, detail: String },
    /// The table's columns are not what spillway can write.
    #[error("glue table {table}: {source}")]
    Columns {
        table: String,
        #[source]
        source: GlueColumnsError,
    },
}

/// The table as read once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlueTable {
    pub schema: Schema,
    /// Glue's version id of what was read, when it gives one.
    pub version_id: Option<String>,
}

/// The Glue table of a pipeline, re-read every `refresh_seconds` with
/// `LATEST`.
pub struct GlueCatalog {
    client: Client,
    config: GlueConfig,
    current: tokio::sync::Mutex<Current>,
}

struct Current {
    table: Arc<GlueTable>,
    read_at: Instant,
}

impl GlueCatalog {
    /// Reads the table once: an error here means `run` must stop.
    pub async fn connect(config: &GlueConfig) -> Result<Self, GlueError> {
        let client = client(config).await;
        let table = read(&client, config).await?;
        tracing::info!(
            table = %describe(config),
            columns = table.schema.columns.len(),
            version = table.version_id.as_deref().unwrap_or("unknown"),
            "read the glue table"
        );
        Ok(Self {
            client,
            config: config.clone(),
            current: tokio::sync::Mutex::new(Current {
                table: Arc::new(table),
                read_at: Instant::now(),
            }),
        })
    }

    /// The columns to encode the next batch under: the table as last
    /// read, read again first if `refresh_seconds` have passed.
    pub async fn schema(&self) -> Arc<GlueTable> {
        let GlueVersion::Latest { refresh } = self.config.version else {
            return self.current.lock().await.table.clone();
        };
        let mut current = self.current.lock().await;
        if current.read_at.elapsed() < refresh {
            return current.table.clone();
        }
        current.read_at = Instant::now();
        match read(&self.client, &self.config).await {
            Ok(table) if table != *current.table => {
                tracing::info!(
                    table = %describe(&self.config),
                    columns = table.schema.columns.len(),
                    version = table.version_id.as_deref().unwrap_or("unknown"),
                    "the glue table changed: the next objects are written under its new columns"
                );
                current.table = Arc::new(table);
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(
                error = %err,
                retry_in_seconds = refresh.as_secs(),
                "cannot read the glue table again: its columns as last read stay in force"
            ),
        }
        current.table.clone()
    }
}

/// The table once, as the configuration names its version.
pub async fn read_once(config: &GlueConfig) -> Result<GlueTable, GlueError> {
    read(&client(config).await, config).await
}

/// `database.table` (with the catalog id when one is given).
pub fn describe(config: &GlueConfig) -> String {
    match &config.catalog_id {
        Some(catalog) => format!("{catalog}:{}.{}", config.database, config.table),
        None => format!("{}.{}", config.database, config.table),
    }
}

async fn client(config: &GlueConfig) -> Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build(),
    );
    if let Some(region) = &config.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(endpoint) = &config.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    Client::new(&loader.load().await)
}

async fn read(client: &Client, config: &GlueConfig) -> Result<GlueTable, GlueError> {
    let table = match &config.version {
        GlueVersion::Latest { .. } => {
            client
                .get_table()
                .database_name(&config.database)
                .name(&config.table)
                .set_catalog_id(config.catalog_id.clone())
                .send()
                .await
                .map_err(|err| classify(&err, config))?
                .table
        }
        GlueVersion::Fixed(version) => client
            .get_table_version()
            .database_name(&config.database)
            .table_name(&config.table)
            .version_id(version)
            .set_catalog_id(config.catalog_id.clone())
            .send()
            .await
            .map_err(|err| classify(&err, config))?
            .table_version
            .and_then(|v| v.table),
    };
    let name = describe(config);
    let Some(table) = table else {
        return Err(GlueError::NotFound {
            table: name,
            detail: "glue answered without a table".into(),
        });
    };
    let columns = table.storage_descriptor().map(|sd| sd.columns()).unwrap_or_default();
    let schema = types::schema_of(columns.iter().map(|c| (c.name(), c.r#type())))
        .map_err(|source| GlueError::Columns { table: name, source })?;
    Ok(GlueTable {
        schema,
        version_id: table.version_id().map(str::to_owned),
    })
}

/// What an SDK error of GetTable or GetTableVersion means.
fn classify<E>(err: &SdkError<E, HttpResponse>, config: &GlueConfig) -> GlueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let table = describe(config);
    if let Some(problem) = spillway_destinations::aws_credentials::find_in_chain(err) {
        return GlueError::Refused {
            table,
            detail: problem.to_string(),
        };
    }
    // The SDK's own text, one line, without what a URL may hold of secrets.
    let shown = || {
        let text = aws_smithy_types::error::display::DisplayErrorContext(err).to_string();
        spillway_destinations::redact::text_for_logs(&text).into_owned()
    };
    match err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let code = inner.code().unwrap_or("Unknown");
            let detail = format!("{code}: {}", inner.message().unwrap_or_default());
            match code {
                "EntityNotFoundException" => GlueError::NotFound { table, detail },
                _ if service.raw().status().as_u16() >= 500 => GlueError::Unreachable { table, detail },
                _ => GlueError::Refused { table, detail },
            }
        }
        SdkError::TimeoutError(_) => GlueError::Unreachable {
            table,
            detail: "the request timed out".into(),
        },
        _ => GlueError::Unreachable { table, detail: shown() },
    }
}
