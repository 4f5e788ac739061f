//! The one place components are registered under their `type`.
//!
//! A new source, format or destination is a folder of its own (with its
//! settings struct and their `check`, beside the component), a variant of
//! the typed enum the runtime matches on ([`SourceConfig`], [`Format`],
//! [`DestinationConfig`]), and one line here. Everything else about its
//! table (refusing other types' keys by name, naming the key of a value of
//! the wrong type, collecting every problem) is [`Choice`]'s.

use serde::de::DeserializeOwned;
use spillway_destinations::http::HttpSettings;
use spillway_destinations::local::LocalSettings;
use spillway_destinations::objects::ObjectSettings;
use spillway_destinations::s3::S3Settings;
use spillway_settings::{keys_of, parse_table, Choice, Given, Problems, Variant};
use spillway_transforms::format::parquet::config::ParquetSettings;
use spillway_transforms::format::{JsonLinesSettings, RawFormatSettings};
use spillway_transforms::Format;

use super::{DestinationConfig, ObjectDestination, StoreConfig};
use crate::catalog::glue::{GlueConfig, GlueSettings};
use crate::coordination::config::{CoordinationConfig, DynamoDbSettings};
use crate::pipeline::kinesis::config::KinesisDestinationSettings;
use crate::processor::append_delimiter::AppendDelimiterSettings;
use crate::processor::cloudwatch_logs::CloudWatchLogsSettings;
use crate::processor::command::CommandSettings;
use crate::processor::config::spec;
use crate::processor::decompression::DecompressionSettings;
use crate::processor::jq::config::{JqSettings, MetadataExtractionSettings};
use crate::processor::lambda::LambdaSettings;
use crate::processor::record_deaggregation::RecordDeaggregationSettings;
use crate::processor::ProcessorConfig;
use crate::source::archive::ArchiveSettings;
use crate::source::kinesis::config::KinesisSettings;
use crate::source::{FileSettings, SourceConfig, StdinSettings};

/// `[source]`.
pub(super) fn sources() -> Choice<'static, SourceConfig> {
    Choice {
        variants: vec![
            Variant::new("file", |raw: FileSettings, key, problems| {
                raw.check(key, problems).map(|paths| SourceConfig::Files { paths })
            }),
            Variant::new("stdin", |_: StdinSettings, _, _| Some(SourceConfig::Stdin)),
            Variant::new("kinesis", |raw: KinesisSettings, key, problems| {
                raw.check(key, problems).map(SourceConfig::Kinesis)
            }),
            Variant::new("archive", |raw: ArchiveSettings, key, problems| {
                raw.check(key, problems)
                    .map(|archive| SourceConfig::Archive(Box::new(archive)))
            }),
        ],
        default: None,
        refusal: |key, _, owners, chosen| format!("only allowed with {key}.type = {owners}, not {chosen:?}"),
    }
}

/// `[coordination]`.
pub(super) fn coordination() -> Choice<'static, CoordinationConfig> {
    Choice {
        variants: vec![Variant::new("dynamodb", |raw: DynamoDbSettings, key, problems| {
            raw.check(key, problems)
        })],
        default: None,
        refusal: |key, _, owners, chosen| format!("only allowed with {key}.type = {owners}, not {chosen:?}"),
    }
}

/// Each `[[processors]]` table.
pub(super) fn processors() -> Choice<'static, ProcessorConfig> {
    Choice {
        variants: vec![
            Variant::new("jq", |raw: JqSettings, key, problems| {
                raw.check(key, problems).map(spec)
            }),
            Variant::new(
                "metadata_extraction",
                |raw: MetadataExtractionSettings, key, problems| raw.check(key, problems).map(spec),
            ),
            Variant::new("decompression", |raw: DecompressionSettings, _, _| {
                Some(spec(raw.check()))
            }),
            Variant::new("cloudwatch_logs", |raw: CloudWatchLogsSettings, _, _| {
                Some(spec(raw.check()))
            }),
            Variant::new(
                "record_deaggregation",
                |raw: RecordDeaggregationSettings, key, problems| raw.check(key, problems).map(spec),
            ),
            Variant::new("append_delimiter", |raw: AppendDelimiterSettings, _, _| {
                Some(spec(raw.check()))
            }),
            Variant::new("lambda", |raw: LambdaSettings, key, problems| {
                raw.check(key, problems).map(spec)
            }),
            Variant::new("command", |raw: CommandSettings, key, problems| {
                raw.check(key, problems).map(spec)
            }),
        ],
        default: None,
        refusal: |key, _, owners, chosen| format!("only allowed with {key}.type = {owners}, not {chosen:?}"),
    }
}

/// `[format]`, and the Glue table a Parquet format takes its columns from
/// (`[format.glue]`).
pub(super) fn formats() -> Choice<'static, (Format, Option<GlueConfig>)> {
    Choice {
        variants: vec![
            Variant::new("json_lines", |raw: JsonLinesSettings, _, _| Some((raw.check(), None))),
            Variant::new("raw", |raw: RawFormatSettings, _, _| Some((raw.check(), None))),
            parquet(),
        ],
        default: Some("json_lines"),
        refusal: |key, _, owners, _| format!("only allowed with {key}.type = {owners}"),
    }
}

/// `[format]` with `type = "parquet"`: the format's own keys
/// ([`ParquetSettings`], in `spillway-transforms`) and `glue`, read by
/// the catalog it names (`crate::catalog::glue`), which keeps AWS out of
/// the crate that encodes.
fn parquet() -> Variant<'static, (Format, Option<GlueConfig>)> {
    let format_keys = keys_of::<ParquetSettings>();
    let keys = [format_keys, &["glue"]].concat();
    Variant::custom("parquet", keys, move |mut given: Given<'_>| {
        given.report_refused();
        let glue = given.table.remove("glue");
        let has_schema = given.table.contains_key("schema");
        let format = given
            .parse::<ParquetSettings>(Some(format_keys))
            .and_then(|raw| raw.check(given.key, given.problems));
        let glue_key = format!("{}.glue", given.key);
        let glue = match glue {
            None => None,
            Some(table) => {
                if has_schema {
                    given.problems.add(
                        &glue_key,
                        format!(
                            "not allowed with {}.schema: the columns come either from a schema file or from a Glue table",
                            given.key
                        ),
                    );
                }
                let toml::Value::Table(table) = table else {
                    given
                        .problems
                        .add(&glue_key, "must be a table: [format.glue] with database and table");
                    return None;
                };
                let settings: Option<GlueSettings> = parse_table(&glue_key, table, given.problems);
                Some(settings.and_then(|s| s.check(&glue_key, given.problems))?)
            }
        };
        Some((Format::Parquet(std::sync::Arc::new(format?)), glue))
    })
}

/// `[destination]` (and `[destination.backup]`, which takes the object
/// stores only) of the delivery stream `name`.
pub(super) fn destinations(name: &str) -> Choice<'_, DestinationConfig> {
    Choice {
        variants: vec![
            objects("local", |raw: LocalSettings, key, problems| {
                raw.check(key, problems).map(|path| StoreConfig::Local { path })
            }),
            objects("s3", |raw: S3Settings, key, problems| {
                raw.check(key, problems).map(StoreConfig::S3)
            }),
            Variant::new("http", move |raw: HttpSettings, key, problems| {
                let backup = |table, problems: &mut Problems| backup(name, &format!("{key}.backup"), table, problems);
                raw.check(key, name, problems, backup).map(DestinationConfig::Http)
            }),
            Variant::new("kinesis", move |raw: KinesisDestinationSettings, key, problems| {
                let backup = |table, problems: &mut Problems| backup(name, &format!("{key}.backup"), table, problems);
                raw.check(key, problems, backup).map(DestinationConfig::Kinesis)
            }),
        ],
        default: None,
        refusal: |key, _, owners, chosen| match chosen {
            "http" | "kinesis" => format!(
                "only allowed with {key}.type = {owners} (with {chosen} they belong in [{key}.backup]), not {chosen:?}"
            ),
            _ => format!("only allowed with {key}.type = {owners}, not {chosen:?}"),
        },
    }
}

/// The types a backup may be.
const BACKUP_TYPES: &[&str] = &["local", "s3"];

fn backup(
    name: &str,
    key: &str,
    table: spillway_settings::Table,
    problems: &mut Problems,
) -> Option<ObjectDestination> {
    match destinations(name).resolve_among(key, table, BACKUP_TYPES, problems)? {
        DestinationConfig::Objects(objects) => Some(objects),
        DestinationConfig::Http(_) | DestinationConfig::Kinesis(_) => None,
    }
}

/// An object store `name` whose own keys are those of `S`, beside the keys
/// every object destination takes ([`ObjectSettings`]). Problems read in
/// that order: the store's, keys of other types, the object keys'.
fn objects<'a, S: DeserializeOwned + 'a>(
    name: &'static str,
    store: fn(S, &str, &mut Problems) -> Option<StoreConfig>,
) -> Variant<'a, DestinationConfig> {
    let store_keys = keys_of::<S>();
    let object_keys = keys_of::<ObjectSettings>();
    let keys = [store_keys, object_keys].concat();
    Variant::custom(name, keys, move |mut given: Given<'_>| {
        let store = given
            .parse::<S>(Some(store_keys))
            .and_then(|raw| store(raw, given.key, given.problems));
        given.report_refused();
        let options = given
            .parse::<ObjectSettings>(Some(object_keys))
            .and_then(|raw| raw.check(given.key, given.problems));
        let options = options?;
        Some(DestinationConfig::Objects(ObjectDestination {
            store: store?,
            prefix: options.prefix,
            error_prefix: options.error_prefix,
            compression: options.compression,
            retry_duration: options.retry_duration,
            max_concurrent_puts: options.max_concurrent_puts,
        }))
    })
}
