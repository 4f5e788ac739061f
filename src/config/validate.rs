//! Raw configuration → [`Config`]: every value checked, every problem
//! collected (not just the first), each naming its key, its value and what
//! is allowed. Each component checks its own table (see [`super::components`]);
//! this is the top-level keys and the rules that span components.

use std::path::{Path, PathBuf};
use std::time::Duration;

use spillway_destinations::Compression;
use spillway_settings::{paths, ConfigProblem, Problems, Table};
use spillway_transforms::Format;

use super::components;
use super::raw::RawConfig;
use super::{BufferLimits, CheckpointConfig, Config, DestinationConfig};
use crate::coordination::config::CoordinationConfig;
use crate::processor::{KeysProduced, Partitioning, ProcessorConfig};

/// Buffer size limits in MiB, as Firehose.
pub const SIZE_MB_RANGE: (i64, i64) = (1, 128);
/// The largest buffer an HTTP endpoint destination takes, in MiB, as
/// Firehose.
pub const HTTP_SIZE_MB_MAX: i64 = 64;
/// Buffer interval limits in seconds, as Firehose.
pub const INTERVAL_SECONDS_RANGE: (i64, i64) = (60, 900);

/// Checks everything that can be checked without the network.
pub fn validate(raw: RawConfig) -> Result<Config, Vec<ConfigProblem>> {
    let mut problems = Problems::default();
    check_name(&raw.name, &mut problems);
    let source_type = type_of(&raw.source);
    let source = components::sources().resolve("source", raw.source, &mut problems);
    let buffer = check_buffer(raw.buffer.size_mb, raw.buffer.interval_seconds, &mut problems);
    // The rules between components go by the types as written, so that
    // they hold even where a component has problems of its own.
    let format_type = type_of(&raw.format);
    let destination_type = type_of(&raw.destination);
    let (format, glue) = match components::formats().resolve("format", raw.format, &mut problems) {
        Some((format, glue)) => (Some(format), glue),
        None => (None, None),
    };
    let destination = components::destinations(&raw.name).resolve("destination", raw.destination, &mut problems);
    let parquet = format_type.as_deref() == Some("parquet");
    check_across(
        destination_type.as_deref(),
        parquet,
        buffer.as_ref(),
        format.as_ref(),
        destination.as_ref(),
        &mut problems,
    );
    let processors: Vec<Option<ProcessorConfig>> = raw
        .processors
        .into_iter()
        .enumerate()
        .map(|(index, table)| components::processors().resolve(&format!("processors[{index}]"), table, &mut problems))
        .collect();
    let partitioning = raw
        .dynamic_partitioning
        .unwrap_or_default()
        .check("dynamic_partitioning", &mut problems);
    check_partitioning(
        destination_type.as_deref(),
        &processors,
        partitioning.as_ref(),
        destination.as_ref(),
        &mut problems,
    );
    let checkpoint = check_checkpoint(raw.checkpoint.path, &mut problems);
    let telemetry = raw.telemetry.unwrap_or_default().check("telemetry", &mut problems);
    let limits = raw.limits.unwrap_or_default().check("limits", &mut problems);
    check_memory(limits.as_ref(), buffer.as_ref(), &mut problems);
    let inferred_table =
        matches!(&format, Some(Format::Parquet(parquet)) if parquet.schema.is_none()) && glue.is_none();
    let coordination = check_coordination(
        raw.coordination,
        source_type.as_deref(),
        destination_type.as_deref(),
        inferred_table,
        &mut problems,
    );
    let processors: Option<Vec<ProcessorConfig>> = processors.into_iter().collect();
    match (
        source,
        buffer,
        format,
        destination,
        checkpoint,
        telemetry,
        processors,
        partitioning,
        coordination,
    ) {
        (
            Some(source),
            Some(buffer),
            Some(format),
            Some(destination),
            Some(checkpoint),
            Some(telemetry),
            Some(processors),
            Some(partitioning),
            Some(coordination),
        ) if problems.is_empty() => Ok(Config {
            name: raw.name,
            source,
            buffer,
            format,
            glue,
            destination,
            checkpoint,
            telemetry,
            processors,
            partitioning,
            limits: limits.unwrap_or_default(),
            coordination,
        }),
        _ => Err(problems.into_vec()),
    }
}

/// `[coordination]`: its own keys (checked beside it,
/// `crate::coordination::config`), that only a Kinesis source has shards
/// to share, that the destination is an object store (a shard's next
/// owner redoes what its last owner was writing by a create-only put under
/// the same key, docs/leases.md; an HTTP request or a PutRecords call
/// cannot be made create-only), and that Parquet's table schema is not
/// inferred: each instance would grow it on its own, and a version's
/// schema object could miss columns another instance's files of that
/// version hold (`crate::pipeline::table`). `Some(None)` without the table.
fn check_coordination(
    table: Option<Table>,
    source_type: Option<&str>,
    destination_type: Option<&str>,
    inferred_table: bool,
    problems: &mut Problems,
) -> Option<Option<CoordinationConfig>> {
    let Some(table) = table else {
        return Some(None);
    };
    let coordination = components::coordination().resolve("coordination", table, problems);
    if let Some(source_type) = source_type.filter(|t| *t != "kinesis") {
        problems.add(
            "coordination",
            format!(
                "only allowed with source.type = \"kinesis\", not {source_type:?}: instances share a stream's shards"
            ),
        );
    }
    if let Some(destination_type) = destination_type.filter(|t| matches!(*t, "http" | "kinesis")) {
        problems.add(
            "coordination",
            format!(
                "not with destination.type = {destination_type:?}: several instances need \"local\" or \"s3\", whose create-only puts let a shard's next owner redo what its last owner was writing"
            ),
        );
    }
    if inferred_table {
        problems.add(
            "coordination",
            "not with format.type = \"parquet\" and an inferred schema: each instance would grow the table schema on its own; give format.schema or [format.glue]",
        );
    }
    coordination.map(Some)
}

fn type_of(table: &Table) -> Option<String> {
    table.get("type").and_then(|t| t.as_str()).map(str::to_owned)
}

fn check_name(name: &str, problems: &mut Problems) {
    if !spillway_settings::is_resource_name(name, 64) {
        problems.add(
            "name",
            format!("{name:?} is not allowed: 1 to 64 characters of A-Z a-z 0-9 _ . -"),
        );
    }
}

fn check_buffer(size_mb: i64, interval_seconds: i64, problems: &mut Problems) -> Option<BufferLimits> {
    let size_mb = problems.in_range("buffer.size_mb", size_mb, SIZE_MB_RANGE);
    let interval = problems.in_range("buffer.interval_seconds", interval_seconds, INTERVAL_SECONDS_RANGE);
    let max_bytes = size_mb? as usize * 1024 * 1024;
    Some(BufferLimits {
        max_bytes,
        max_age: Duration::from_secs(interval? as u64),
        max_records: max_bytes / crate::buffer::RECORD_BOOKKEEPING,
    })
}

/// The memory budget holds at least two buffers (one filling, one being
/// written): below that, every buffer would be flushed early.
fn check_memory(limits: Option<&crate::limits::LimitsConfig>, buffer: Option<&BufferLimits>, problems: &mut Problems) {
    let (Some(memory_mb), Some(buffer)) = (limits.and_then(|l| l.memory_mb), buffer) else {
        return;
    };
    let size_mb = buffer.max_bytes / (1024 * 1024);
    if memory_mb < 2 * size_mb {
        problems.add(
            "limits.memory_mb",
            format!(
                "{memory_mb} is below two buffers of buffer.size_mb = {size_mb}: allowed {} to {}",
                2 * size_mb,
                crate::limits::config::MEMORY_MB_RANGE.1
            ),
        );
    }
}

/// The rules that tie one component to another.
fn check_across(
    destination_type: Option<&str>,
    parquet: bool,
    buffer: Option<&BufferLimits>,
    format: Option<&Format>,
    destination: Option<&DestinationConfig>,
    problems: &mut Problems,
) {
    let http = destination_type == Some("http");
    let size_mb = buffer.map(|b| (b.max_bytes / (1024 * 1024)) as i64);
    if let (true, Some(size_mb)) = (http, size_mb) {
        if size_mb > HTTP_SIZE_MB_MAX {
            problems.add(
                "buffer.size_mb",
                format!("{size_mb} is out of range with destination.type = \"http\": allowed 1 to {HTTP_SIZE_MB_MAX}"),
            );
        }
    }
    if let (Some(record_destination @ ("http" | "kinesis")), Some(format)) = (destination_type, format) {
        if !matches!(format, Format::JsonLines | Format::Raw { delimiter: None }) {
            problems.add(
                "format",
                format!("with destination.type = {record_destination:?} records are sent as they are: format.type must be json_lines (without envelope) or raw (without a delimiter)"),
            );
        }
    }
    if let (true, Some(DestinationConfig::Objects(objects))) = (parquet, destination) {
        if objects.compression != Compression::None {
            problems.add(
                "destination.compression",
                format!(
                    "{:?} does not apply to format.type = \"parquet\", which compresses inside the file: \
                     set format.codec instead, and destination.compression = \"none\"",
                    objects.compression.name()
                ),
            );
        }
    }
}

/// Dynamic partitioning against the prefix and the processors: a prefix
/// naming a partition key needs dynamic partitioning on, and a processor
/// that can make the key; partitioning needs an object destination.
fn check_partitioning(
    destination_type: Option<&str>,
    processors: &[Option<ProcessorConfig>],
    partitioning: Option<&Partitioning>,
    destination: Option<&DestinationConfig>,
    problems: &mut Problems,
) {
    let Some(partitioning) = partitioning else { return };
    if let (Some(record_destination @ ("http" | "kinesis")), true) = (destination_type, partitioning.enabled) {
        problems.add(
            "dynamic_partitioning.enabled",
            format!(
                "true is not allowed with destination.type = {record_destination:?}: it takes records, not prefixes"
            ),
        );
        return;
    }
    let Some(DestinationConfig::Objects(objects)) = destination else {
        return;
    };
    let (query, lambda) = objects.prefix.partition_keys();
    if query.is_empty() && lambda.is_empty() {
        // As Firehose: partitioning that names no key would make one
        // partition, and is a prefix forgotten.
        if partitioning.enabled {
            problems.add(
                "dynamic_partitioning.enabled",
                format!(
                    "true, but destination.prefix {:?} names no !{{partitionKeyFromQuery:NAME}} or !{{partitionKeyFromLambda:NAME}}: add one, or set enabled = false",
                    objects.prefix.as_str()
                ),
            );
        }
        return;
    }
    let prefix = objects.prefix.as_str();
    if !partitioning.enabled {
        problems.add(
            "destination.prefix",
            format!("{prefix:?} names partition keys: set dynamic_partitioning.enabled = true, or remove them"),
        );
        return;
    }
    // Only when every processor checked: a broken one is reported already.
    let Some(produced): Option<Vec<KeysProduced>> = processors
        .iter()
        .map(|p| p.as_ref().map(|p| p.keys_produced()))
        .collect()
    else {
        return;
    };
    for name in query {
        let made = produced.iter().any(|p| match p {
            KeysProduced::FromQuery(None) => true,
            KeysProduced::FromQuery(Some(names)) => names.iter().any(|n| n == name),
            _ => false,
        });
        if !made {
            problems.add(
                "destination.prefix",
                format!("{prefix:?} names !{{partitionKeyFromQuery:{name}}}, which no processor makes: add a metadata_extraction processor whose query gives {name:?}"),
            );
        }
    }
    for name in lambda {
        if !produced.contains(&KeysProduced::FromLambda) {
            problems.add(
                "destination.prefix",
                format!("{prefix:?} names !{{partitionKeyFromLambda:{name}}}, which no processor makes: add a lambda or command processor that returns it"),
            );
        }
    }
}

fn check_checkpoint(path: String, problems: &mut Problems) -> Option<CheckpointConfig> {
    if path.is_empty() {
        problems.add("checkpoint.path", "must not be empty");
        return None;
    }
    if let Some(problem) = paths::directory_problem(Path::new(&path)) {
        problems.add("checkpoint.path", format!("{path:?} {problem}"));
    }
    Some(CheckpointConfig {
        dir: PathBuf::from(path),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn problems(text: &str) -> Vec<String> {
        match parse(text, "test.toml", &|_| None) {
            Ok(_) => vec![],
            Err(err) => err.problems.iter().map(ToString::to_string).collect(),
        }
    }

    const MINIMAL: &str = "[source]\ntype = \"stdin\"\n[destination]\ntype = \"local\"\npath = \"out\"\n";

    #[test]
    fn minimal_config_gets_the_defaults() {
        let config = parse(MINIMAL, "t", &|_| None).unwrap();
        assert_eq!(config.name, "spillway");
        assert_eq!(config.buffer.max_bytes, 5 * 1024 * 1024);
        assert_eq!(config.buffer.max_age.as_secs(), 300);
        assert_eq!(config.format, spillway_transforms::Format::JsonLines);
        assert_eq!(config.checkpoint.dir, std::path::PathBuf::from("./state"));
    }

    #[test]
    fn out_of_range_buffer_values_name_key_value_and_range() {
        let text = format!("{MINIMAL}[buffer]\nsize_mb = 200\ninterval_seconds = 30\n");
        assert_eq!(
            problems(&text),
            [
                "buffer.size_mb: 200 is out of range: allowed 1 to 128",
                "buffer.interval_seconds: 30 is out of range: allowed 60 to 900",
            ]
        );
    }

    #[test]
    fn partitioning_that_names_no_key_in_the_prefix_is_refused_as_firehose_does() {
        let text = format!("{MINIMAL}prefix = \"events/\"\n[dynamic_partitioning]\nenabled = true\n");
        assert_eq!(
            problems(&text),
            ["dynamic_partitioning.enabled: true, but destination.prefix \"events/\" names no !{partitionKeyFromQuery:NAME} or !{partitionKeyFromLambda:NAME}: add one, or set enabled = false"]
        );
    }

    #[test]
    fn a_toml_error_is_one_line_with_its_line_number() {
        let found = problems(&format!("{MINIMAL}[destination]\npath = \"again\"\n"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(!found[0].contains('\n') && !found[0].contains("\\n"), "{found:?}");
        assert!(found[0].starts_with("not valid TOML at line 6: "), "{found:?}");
        assert!(found[0].contains("duplicate key `destination`"), "{found:?}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let found = problems(&format!("{MINIMAL}[buffer]\nsize = 5\n"));
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0],
            "buffer.size: unknown field `size`, expected `size_mb` or `interval_seconds`"
        );
        let found = problems("[source]\ntype = \"stdin\"\nwhat = 1\n[destination]\ntype = \"local\"\npath = \"o\"\n");
        assert!(found[0].contains("unknown field `what`"), "{found:?}");
        let found = problems(&format!("{MINIMAL}colour = \"blue\"\n"));
        assert!(found[0].contains("unknown field `colour`"), "{found:?}");
    }

    #[test]
    fn every_problem_is_reported() {
        let text = "name = \"has space\"\n[source]\ntype = \"file\"\npath = [\"a/x.ndjson\", \"b/x.ndjson\"]\n\
                    [format]\ntype = \"avro\"\n[destination]\ntype = \"local\"\npath = \"o\"\n\
                    compression = \"lz4\"\ntime_zone = \"Mars/Olympus\"\nprefix = \"!{firehose:error-output-type}/\"\n";
        let found = problems(text);
        let keys: Vec<&str> = found.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "name",
                "source.path",
                "format.type",
                "destination.time_zone",
                "destination.prefix",
                "destination.compression"
            ],
            "{found:#?}"
        );
        assert!(found[5].contains("\"lz4\" is not allowed: expected one of none, gzip, snappy, zstd, zip"));
    }

    #[test]
    fn environment_variables_expand_in_strings() {
        let text =
            "[source]\ntype = \"file\"\npath = \"${DATA}/in.ndjson\"\n[destination]\ntype = \"local\"\npath = \"o\"\n";
        let config = parse(text, "t", &|name| (name == "DATA").then(|| "/data".to_owned())).unwrap();
        assert_eq!(
            config.source,
            crate::config::SourceConfig::Files {
                paths: vec!["/data/in.ndjson".into()]
            }
        );
        let err = parse(text, "t", &|_| None).unwrap_err();
        assert_eq!(
            err.problems[0].to_string(),
            "source.path: environment variable DATA is not set"
        );
    }

    #[test]
    fn kinesis_sources_are_checked_key_by_key() {
        let text =
            "[source]\ntype = \"kinesis\"\nstream = \"s\"\nstream_arn = \"arn:aws:kinesis:us-east-1:1:stream/s\"\n\
                    start_position = \"at_timestamp\"\nstart_timestamp = \"yesterday\"\npoll_interval_ms = 10\n\
                    [destination]\ntype = \"local\"\npath = \"o\"\n";
        assert_eq!(
            problems(text),
            [
                "source.stream: give either stream or stream_arn, not both",
                "source.start_timestamp: \"yesterday\" is not an RFC 3339 time (premature end of input): expected e.g. 2026-11-01T00:00:00Z",
                "source.poll_interval_ms: 10 is out of range: allowed 200 to 60000",
            ]
        );
        let ok = "[source]\ntype = \"kinesis\"\nstream_arn = \"arn:aws:kinesis:eu-west-1:123:stream/clicks\"\n\
                  start_position = \"latest\"\n[destination]\ntype = \"local\"\npath = \"o\"\n";
        match parse(ok, "t", &|_| None).unwrap().source {
            crate::config::SourceConfig::Kinesis(k) => {
                assert_eq!(k.start, crate::config::StartPosition::Latest);
                assert_eq!(k.max_records, 10_000);
            }
            other => panic!("{other:?}"),
        }
    }

    const KINESIS: &str =
        "[source]\ntype = \"kinesis\"\nstream = \"s\"\n[destination]\ntype = \"local\"\npath = \"o\"\n";

    #[test]
    fn coordination_is_refused_with_an_inferred_parquet_schema_only() {
        let coordination = "[coordination]\ntype = \"dynamodb\"\ntable = \"spillway-leases\"\n";
        let inferred = format!("{KINESIS}[format]\ntype = \"parquet\"\n{coordination}");
        assert_eq!(
            problems(&inferred),
            ["coordination: not with format.type = \"parquet\" and an inferred schema: each instance would grow the table schema on its own; give format.schema or [format.glue]"]
        );
        let glue = format!(
            "{KINESIS}[format]\ntype = \"parquet\"\n[format.glue]\ndatabase = \"d\"\ntable = \"t\"\n{coordination}"
        );
        assert!(problems(&glue).is_empty(), "{:?}", problems(&glue));
    }

    #[test]
    fn coordination_is_refused_with_an_endpoint_destination() {
        let coordination = "[coordination]\ntype = \"dynamodb\"\ntable = \"spillway-leases\"\n";
        let http = format!(
            "[source]\ntype = \"kinesis\"\nstream = \"s\"\n[destination]\ntype = \"http\"\nurl = \"http://127.0.0.1:1/\"\n\
             [destination.backup]\ntype = \"local\"\npath = \"b\"\n{coordination}"
        );
        assert_eq!(
            problems(&http),
            ["coordination: not with destination.type = \"http\": several instances need \"local\" or \"s3\", whose create-only puts let a shard's next owner redo what its last owner was writing"]
        );
        let kinesis = format!(
            "[source]\ntype = \"kinesis\"\nstream = \"s\"\n[destination]\ntype = \"kinesis\"\nstream = \"t\"\n\
             [destination.backup]\ntype = \"local\"\npath = \"b\"\n{coordination}"
        );
        assert_eq!(problems(&kinesis).len(), 1, "{:?}", problems(&kinesis));
        assert!(problems(&kinesis)[0].starts_with("coordination: not with destination.type = \"kinesis\""));
    }

    #[test]
    fn coordination_with_a_kinesis_source_is_taken() {
        let text = format!("{KINESIS}[coordination]\ntype = \"dynamodb\"\ntable = \"spillway-leases\"\n");
        let config = parse(&text, "t", &|_| None).unwrap();
        assert_eq!(config.coordination.unwrap().table, "spillway-leases");
        assert!(parse(KINESIS, "t", &|_| None).unwrap().coordination.is_none());
    }

    #[test]
    fn coordination_is_checked_key_by_key() {
        let text = format!(
            "{KINESIS}[coordination]\ntype = \"dynamodb\"\ntable = \"t\"\nendpoint = \"ftp://u:s3cret@h/\"\n\
             worker_id = \"two words\"\nlease_duration_seconds = 0\nlease_seconds = 5\n"
        );
        assert_eq!(
            problems(&text),
            [
                "coordination.lease_seconds: unknown field `lease_seconds`, expected one of `table`, `region`, `endpoint`, `worker_id`, `lease_duration_seconds`",
                "coordination.table: \"t\" is not a DynamoDB table name: 3 to 255 characters of A-Z a-z 0-9 _ . -",
                "coordination.endpoint: \"ftp://h/\" is not a URL: expected http://host[:port][/path] or https://...",
                "coordination.worker_id: \"two words\" is not allowed: 1 to 128 characters without whitespace or control characters",
                "coordination.lease_duration_seconds: 0 is out of range: allowed 1 to 3600",
            ]
        );
        let no_table = format!("{KINESIS}[coordination]\ntype = \"dynamodb\"\n");
        assert_eq!(
            problems(&no_table),
            [
                "coordination.table: is required with coordination.type = \"dynamodb\": the lease table, e.g. \"spillway-leases\"",
            ]
        );
        let other_type = format!("{KINESIS}[coordination]\ntype = \"zookeeper\"\n");
        assert_eq!(
            problems(&other_type),
            ["coordination.type: \"zookeeper\" is not allowed: expected one of dynamodb",]
        );
    }

    #[test]
    fn coordination_needs_a_kinesis_source() {
        let text = format!("{MINIMAL}[coordination]\ntype = \"dynamodb\"\ntable = \"spillway-leases\"\n");
        assert_eq!(
            problems(&text),
            [
                "coordination: only allowed with source.type = \"kinesis\", not \"stdin\": instances share a stream's shards",
            ]
        );
    }

    #[test]
    fn a_coordination_table_becomes_its_settings_with_defaults() {
        let table = |text: &str| -> spillway_settings::Table { toml::from_str(text).unwrap() };
        let mut found = spillway_settings::Problems::default();
        let config = super::components::coordination()
            .resolve(
                "coordination",
                table("type = \"dynamodb\"\ntable = \"leases\"\nregion = \"eu-west-1\"\nendpoint = \"http://127.0.0.1:5000\"\n"),
                &mut found,
            )
            .unwrap();
        assert!(found.is_empty());
        assert_eq!(config.table, "leases");
        assert_eq!(config.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(config.worker_id, None, "the host name and process id, at start");
        assert_eq!(config.lease_duration, std::time::Duration::from_secs(10));
        let config = super::components::coordination()
            .resolve(
                "coordination",
                table(
                    "type = \"dynamodb\"\ntable = \"leases\"\nworker_id = \"archiver-a\"\nlease_duration_seconds = 3\n",
                ),
                &mut found,
            )
            .unwrap();
        assert!(found.is_empty());
        assert_eq!(config.worker_id.as_deref(), Some("archiver-a"));
        assert_eq!(config.lease_duration, std::time::Duration::from_secs(3));
    }

    #[test]
    fn s3_destinations_are_checked_key_by_key() {
        let text = "[source]\ntype = \"stdin\"\n[destination]\ntype = \"s3\"\nbucket = \"B\"\npath = \"x\"\n\
                    server_side_encryption = \"rot13\"\nmultipart_threshold_mb = 1\n";
        assert_eq!(
            problems(text),
            [
                "destination.bucket: \"B\" is not a bucket name: 3 to 63 characters of a-z 0-9 . -",
                "destination.server_side_encryption: \"rot13\" is not allowed: expected one of AES256, aws:kms",
                "destination.multipart_threshold_mb: 1 is out of range: allowed 5 to 5120",
                "destination.path: only allowed with destination.type = \"local\", not \"s3\"",
            ]
        );
        let local_with_bucket = format!("{MINIMAL}bucket = \"b-b-b\"\n");
        assert_eq!(
            problems(&local_with_bucket),
            ["destination.bucket: only allowed with destination.type = \"s3\", not \"local\""]
        );
    }

    #[test]
    fn max_concurrent_puts_is_1_to_64_and_4_by_default() {
        for (value, expected) in [("0", Some("0")), ("65", Some("65")), ("1", None), ("64", None)] {
            let text = format!("{MINIMAL}max_concurrent_puts = {value}\n");
            match expected {
                Some(shown) => assert_eq!(
                    problems(&text),
                    [format!(
                        "destination.max_concurrent_puts: {shown} is out of range: allowed 1 to 64"
                    )]
                ),
                None => assert!(problems(&text).is_empty(), "{value}"),
            }
        }
        let config = parse(MINIMAL, "test", &|_| None).unwrap();
        assert_eq!(config.destination.objects().max_concurrent_puts, 4);
    }

    const HTTP: &str =
        "[source]\ntype = \"stdin\"\n[destination]\ntype = \"http\"\nurl = \"https://r.example.com/in\"\n";

    #[test]
    fn http_destinations_are_checked_key_by_key() {
        let text = format!(
            "[buffer]\nsize_mb = 100\n{HTTP}retry_duration_seconds = 9000\ncontent_encoding = \"br\"\n\
             backup_mode = \"some\"\naccess_key = \"bad\\nkey\"\ncompression = \"gzip\"\n"
        );
        assert_eq!(
            problems(&text),
            [
                "destination.compression: only allowed with destination.type = \"local\" or \"s3\" (with http they belong in [destination.backup]), not \"http\"",
                "destination.access_key: is not a valid header value (the value is not shown): expected printable ASCII",
                "destination.content_encoding: \"br\" is not allowed: expected one of none, gzip",
                "destination.retry_duration_seconds: 9000 is out of range: allowed 0 to 7200",
                "destination.backup_mode: \"some\" is not allowed: expected one of failed_only, all",
                "destination.backup: is required with destination.type = \"http\": a local or s3 destination for the records the endpoint does not take",
                "buffer.size_mb: 100 is out of range with destination.type = \"http\": allowed 1 to 64",
            ]
        );
        let bad_backup = format!("{HTTP}[destination.backup]\ntype = \"http\"\n");
        assert_eq!(
            problems(&bad_backup),
            ["destination.backup.type: \"http\" is not allowed: expected one of local, s3"]
        );
        let s3_backup_without_bucket = format!("{HTTP}[destination.backup]\ntype = \"s3\"\nurl = \"https://x\"\n");
        assert_eq!(
            problems(&s3_backup_without_bucket),
            [
                "destination.backup.bucket: is required with destination.backup.type = \"s3\"",
                "destination.backup.url: only allowed with destination.backup.type = \"http\", not \"s3\"",
            ]
        );
        let ok = format!("{HTTP}[destination.backup]\ntype = \"local\"\npath = \"b\"\nretry_duration_seconds = 60\n");
        match parse(&ok, "t", &|_| None).unwrap().destination {
            crate::config::DestinationConfig::Http(http) => {
                assert_eq!(http.retry_duration.as_secs(), 300);
                assert_eq!(http.backup_mode, crate::config::BackupMode::FailedOnly);
                assert_eq!(http.endpoint.request_timeout.as_secs(), 180);
                assert_eq!(http.backup.retry_duration.map(|d| d.as_secs()), Some(60));
                assert!(http.endpoint.source_arn.ends_with(":deliverystream/spillway"));
            }
            other => panic!("{other:?}"),
        }
        let parquet = format!("{HTTP}[destination.backup]\ntype = \"local\"\npath = \"b\"\n[format]\ntype = \"raw\"\ndelimiter = \"\\n\"\n");
        assert_eq!(
            problems(&parquet),
            ["format: with destination.type = \"http\" records are sent as they are: format.type must be json_lines (without envelope) or raw (without a delimiter)"]
        );
    }

    #[test]
    fn parquet_gets_its_defaults_and_refuses_whole_object_compression() {
        let text = format!("{MINIMAL}[format]\ntype = \"parquet\"\n");
        let config = parse(&text, "t", &|_| None).unwrap();
        let spillway_transforms::Format::Parquet(parquet) = &config.format else {
            panic!("{:?}", config.format)
        };
        assert_eq!(
            **parquet,
            spillway_transforms::format::parquet::ParquetFormat::default()
        );
        let text = format!("{MINIMAL}[format]\ntype = \"parquet\"\ncodec = \"zstd\"\ncodec_level = 9\n");
        let config = parse(&text, "t", &|_| None).unwrap();
        let spillway_transforms::Format::Parquet(parquet) = &config.format else {
            panic!("{:?}", config.format)
        };
        assert_eq!(
            (parquet.codec, parquet.codec_level),
            (spillway_transforms::format::parquet::Codec::Zstd, Some(9))
        );
        for (codec, level, problem) in [
            ("gzip", 10, "format.codec_level: 10 is out of range: allowed 0 to 9"),
            ("zstd", 0, "format.codec_level: 0 is out of range: allowed 1 to 22"),
            (
                "snappy",
                3,
                "format.codec_level: 3: format.codec = \"snappy\" has no levels; only gzip (0 to 9) and zstd (1 to 22) do",
            ),
        ] {
            let text = format!("{MINIMAL}[format]\ntype = \"parquet\"\ncodec = \"{codec}\"\ncodec_level = {level}\n");
            assert_eq!(problems(&text), [problem]);
        }
        let text = format!("{MINIMAL}[format]\ntype = \"parquet\"\nelide_rebuildable_original = false\n");
        let config = parse(&text, "t", &|_| None).unwrap();
        let spillway_transforms::Format::Parquet(parquet) = &config.format else {
            panic!("{:?}", config.format)
        };
        assert!(parquet.keep_original && !parquet.elide_rebuildable_original);
        let text = format!("{MINIMAL}compression = \"gzip\"\n[format]\ntype = \"parquet\"\ncodec = \"lz4\"\n");
        assert_eq!(
            problems(&text),
            [
                "format.codec: \"lz4\" is not allowed: expected one of snappy, gzip, zstd, none",
                "destination.compression: \"gzip\" does not apply to format.type = \"parquet\", which compresses \
                 inside the file: set format.codec instead, and destination.compression = \"none\"",
            ]
        );
    }

    #[test]
    fn parquet_keys_are_checked_and_refused_with_other_formats() {
        let text = format!(
            "{MINIMAL}[format]\ntype = \"parquet\"\nrow_group_size_mb = 0\nwriter_version = \"3\"\n\
             page_size_bytes = 10\ndelimiter = \",\"\n"
        );
        assert_eq!(
            problems(&text),
            [
                "format.delimiter: only allowed with format.type = \"raw\"",
                "format.row_group_size_mb: 0 is out of range: allowed 1 to 1024",
                "format.page_size_bytes: 10 is out of range: allowed 65536 to 67108864",
                "format.writer_version: \"3\" is not allowed: expected one of 1.0, 2.0",
            ]
        );
        let text = format!(
            "{MINIMAL}[format]\ntype = \"json_lines\"\ncodec = \"zstd\"\nkeep_original = false\n\
             elide_rebuildable_original = true\n"
        );
        assert_eq!(
            problems(&text),
            [
                "format.codec: only allowed with format.type = \"parquet\"",
                "format.keep_original: only allowed with format.type = \"parquet\"",
                "format.elide_rebuildable_original: only allowed with format.type = \"parquet\"",
            ]
        );
    }

    #[test]
    fn paths_urls_and_prefixes_that_run_would_refuse_are_refused_first() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let (dir_shown, file_shown) = (dir.path().display(), file.display());
        let text = format!(
            "[source]\ntype = \"file\"\npath = \"{dir_shown}\"\n[destination]\ntype = \"local\"\npath = \"{file_shown}\"\n\
             prefix = \"a/!{{timestamp:'..'}}/\"\n[checkpoint]\npath = \"{file_shown}/state\"\n"
        );
        assert_eq!(
            problems(&text),
            [
                format!("source.path: \"{dir_shown}\" is a directory: expected an NDJSON file (or a FIFO)"),
                format!("destination.path: \"{file_shown}\" exists and is not a directory: expected a directory (created if missing)"),
                "destination.prefix: \"a/!{timestamp:'..'}/\": makes keys such as \"a/../object\", which contains a '.' or '..' segment: \
                 a prefix must make a relative key without '.' or '..' segments, '\\' or control characters"
                    .to_owned(),
                format!("checkpoint.path: \"{file_shown}/state\" cannot be created: \"{file_shown}\" is not a directory"),
            ]
        );
        let text = "[source]\ntype = \"kinesis\"\nstream = \"s\"\nendpoint = \"http://u:pa55word@:1/?t=t0ken\"\n\
                    [destination]\ntype = \"s3\"\nbucket = \"bkt\"\nendpoint = \"https://h:1/?token=t0ken\"\n";
        let found = problems(text);
        assert_eq!(
            found,
            [
                "source.endpoint: \"http://:1/\" has no host: expected http://host[:port][/path] or https://...",
                "destination.endpoint: \"https://h:1/\" (query or fragment not shown) must not have a query string or \
                 fragment: the AWS SDK refuses them in an S3 endpoint",
            ]
        );
    }

    #[test]
    fn a_glue_table_is_parquet_only_and_never_beside_a_schema_file() {
        let glue = "[format.glue]\ndatabase = \"analytics\"\ntable = \"events\"\n";
        let text = format!("{MINIMAL}[format]\ntype = \"parquet\"\n{glue}region = \"eu-west-1\"\n");
        let config = parse(&text, "t", &|_| None).unwrap();
        let glue_config = config.glue.unwrap();
        assert_eq!(
            (glue_config.database.as_str(), glue_config.table.as_str()),
            ("analytics", "events")
        );
        assert_eq!(glue_config.region.as_deref(), Some("eu-west-1"));
        let text = format!("{MINIMAL}[format]\ntype = \"json_lines\"\n{glue}");
        assert_eq!(
            problems(&text),
            ["format.glue: only allowed with format.type = \"parquet\""]
        );
        let text = format!("{MINIMAL}[format]\ntype = \"parquet\"\nschema = \"s.json\"\n{glue}colour = 1\n");
        let found = problems(&text);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("format.schema: cannot read schema file s.json"),
            "{found:?}"
        );
        assert_eq!(
            found[1],
            "format.glue: not allowed with format.schema: the columns come either from a schema file or from a Glue table"
        );
        assert!(
            found[2].starts_with("format.glue.colour: unknown field `colour`"),
            "{found:?}"
        );
        let text = format!("{MINIMAL}[format]\ntype = \"parquet\"\nglue = \"events\"\n");
        assert_eq!(
            problems(&text),
            ["format.glue: must be a table: [format.glue] with database and table"]
        );
    }

    #[test]
    fn a_bad_schema_file_is_reported_with_the_file_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(
            &path,
            r#"{"columns":[{"name":"id","type":"int64"},{"name":"price","type":"money"}]}"#,
        )
        .unwrap();
        let text = format!(
            "{MINIMAL}[format]\ntype = \"parquet\"\nschema = \"{}\"\n",
            path.display()
        );
        let found = problems(&text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(&format!(
                "format.schema: schema file {}: column \"price\": type \"money\": unknown type",
                path.display()
            )),
            "{found:?}"
        );
        assert!(found[0].contains("allowed: string, boolean, int32"), "{found:?}");
        let missing = format!("{MINIMAL}[format]\ntype = \"parquet\"\nschema = \"/nonexistent/s.json\"\n");
        assert!(problems(&missing)[0].starts_with("format.schema: cannot read schema file /nonexistent/s.json"));
    }

    #[test]
    fn processors_and_dynamic_partitioning_are_checked_against_the_prefix() {
        let partitioned = "[source]\ntype = \"stdin\"\n[destination]\ntype = \"local\"\npath = \"o\"\n\
                           prefix = \"c=!{partitionKeyFromQuery:customer}/\"\n";
        assert_eq!(
            problems(partitioned),
            ["destination.prefix: \"c=!{partitionKeyFromQuery:customer}/\" names partition keys: set dynamic_partitioning.enabled = true, or remove them"]
        );
        let enabled = format!("{partitioned}[dynamic_partitioning]\nenabled = true\nmax_active_partitions = 0\n");
        assert_eq!(
            problems(&enabled),
            ["dynamic_partitioning.max_active_partitions: 0 is out of range: allowed 1 to 5000"]
        );
        let no_maker = format!(
            "{partitioned}[dynamic_partitioning]\nenabled = true\n[[processors]]\ntype = \"jq\"\nquery = \".\"\n"
        );
        assert_eq!(
            problems(&no_maker),
            ["destination.prefix: \"c=!{partitionKeyFromQuery:customer}/\" names !{partitionKeyFromQuery:customer}, \
              which no processor makes: add a metadata_extraction processor whose query gives \"customer\""]
        );
        let ok = format!(
            "{partitioned}[dynamic_partitioning]\nenabled = true\n[[processors]]\ntype = \"metadata_extraction\"\n\
             query = \"{{customer: .c}}\"\n"
        );
        let config = parse(&ok, "t", &|_| None).unwrap();
        assert_eq!(config.processors.len(), 1);
        assert_eq!(config.partitioning.max_active_partitions, 500);
        let bad = format!(
            "{MINIMAL}[[processors]]\ntype = \"jq\"\nquery = \"select(\"\n[[processors]]\ntype = \"lambada\"\n"
        );
        let found = problems(&bad);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("processors[0].query: \"select(\" does not parse"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("processors[1].type: \"lambada\" is not allowed"),
            "{found:?}"
        );
        let http = format!(
            "{HTTP}[destination.backup]\ntype = \"local\"\npath = \"b\"\n[dynamic_partitioning]\nenabled = true\n"
        );
        assert_eq!(
            problems(&http),
            ["dynamic_partitioning.enabled: true is not allowed with destination.type = \"http\": it takes records, not prefixes"]
        );
    }
}
