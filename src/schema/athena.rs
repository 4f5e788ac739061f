//! The Athena DDL of a table that reads a pipeline's Parquet archive:
//! `CREATE EXTERNAL TABLE` with every column in its Hive type, the
//! Parquet SerDe, the data prefix as the location, and its partition
//! columns with partition projection (see [`super::partitions`]), so that
//! Athena finds new partitions without a crawler.
//!
//! Names are quoted with backticks. Athena takes names of letters, digits
//! and underscores (it lowercases them), at most 255 characters: any other
//! name, and names that only differ by case, are reported. The DDL is
//! still printed, so that the user can rename by hand.

use chrono::{DateTime, Utc};
use spillway_transforms::format::parquet::{Column, ColumnType, ParquetFormat};

use super::partitions::{self, Layout, Projection};
use crate::config::{Config, StoreConfig};

/// What `--ddl athena` prints, and what to report beside it.
#[derive(Debug)]
pub struct Ddl {
    pub text: String,
    /// Names Athena cannot take: the DDL fails as it is.
    pub problems: Vec<String>,
    /// What the DDL could not express (no partitioning, a time zone): it
    /// works, and reads what it says.
    pub notes: Vec<String>,
}

/// The DDL of the table `table` (default: the pipeline's name), whose
/// user columns are `columns`; date projections start at `since`.
pub fn create_table(
    config: &Config,
    parquet: &ParquetFormat,
    columns: &[Column],
    table: Option<&str>,
    since: DateTime<Utc>,
) -> Ddl {
    let mut problems = Vec::new();
    let objects = config.destination.objects();
    let layout = partitions::layout(&objects.prefix, since);
    let mut notes = layout.problems.clone();
    if !layout.columns.is_empty() && objects.prefix.time_zone() != chrono_tz::Tz::UTC {
        notes.push(format!(
            "destination.time_zone is {}: Athena projects dates in UTC, so NOW in a range lags or leads the newest partitions by the zone's offset",
            objects.prefix.time_zone()
        ));
    }
    let table = table.map_or_else(|| table_name(&config.name), str::to_owned);
    let root = location_root(&objects.store);
    let location = format!("{root}{}", layout.base);

    let mut all: Vec<(String, String)> = Vec::new();
    for column in columns {
        check_name(&column.name, "column", &mut problems);
        all.push((column.name.clone(), hive_type(&column.ty, &column.name, &mut problems)));
    }
    all.extend(reserved_columns(parquet));
    let mut text = format!("CREATE EXTERNAL TABLE IF NOT EXISTS `{table}` (\n");
    text.push_str(&column_list(&all));
    text.push_str(")\n");
    let partition_columns: Vec<(String, String)> = layout
        .columns
        .iter()
        .map(|c| (c.name.clone(), "string".to_owned()))
        .collect();
    for (name, _) in &partition_columns {
        check_name(name, "partition column", &mut problems);
    }
    let mut seen: Vec<String> = Vec::new();
    for (name, _) in all.iter().chain(&partition_columns) {
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            problems.push(format!(
                "{name:?}: Athena lowercases names, and another column (or a partition column) has this one"
            ));
        }
        seen.push(lower);
    }
    if !partition_columns.is_empty() {
        text.push_str("PARTITIONED BY (\n");
        text.push_str(&column_list(&partition_columns));
        text.push_str(")\n");
    }
    text.push_str("ROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'\n");
    text.push_str("STORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat'\n");
    text.push_str("OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat'\n");
    text.push_str(&format!("LOCATION {}", literal(&location)));
    let properties = properties(&layout, &location);
    if !properties.is_empty() {
        text.push_str("\nTBLPROPERTIES (\n");
        let lines: Vec<String> = properties
            .iter()
            .map(|(k, v)| format!("  {} = {}", literal(k), literal(v)))
            .collect();
        text.push_str(&lines.join(",\n"));
        text.push_str("\n)");
    }
    text.push_str(";\n");
    Ddl { text, problems, notes }
}

/// A table name Athena takes, from the pipeline's name: lowercase, with
/// `.` and `-` as `_`.
fn table_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect()
}

/// Where the destination's keys start: `s3://bucket/`, or the local
/// directory's absolute path.
fn location_root(store: &StoreConfig) -> String {
    match store {
        StoreConfig::S3(s3) => format!("s3://{}/", s3.bucket),
        StoreConfig::Local { path } => {
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            let mut root = absolute.display().to_string();
            if !root.ends_with('/') {
                root.push('/');
            }
            root
        }
    }
}

fn properties(layout: &Layout, location: &str) -> Vec<(String, String)> {
    if layout.columns.is_empty() {
        return Vec::new();
    }
    let mut properties = vec![("projection.enabled".to_owned(), "true".to_owned())];
    for column in &layout.columns {
        let key = |what: &str| format!("projection.{}.{what}", column.name);
        match &column.projection {
            Projection::Date { format, range, unit } => {
                properties.push((key("type"), "date".into()));
                properties.push((key("format"), format.clone()));
                properties.push((key("range"), range.clone()));
                properties.push((key("interval"), "1".into()));
                properties.push((key("interval.unit"), (*unit).into()));
            }
            Projection::Integer { range, digits } => {
                properties.push((key("type"), "integer".into()));
                properties.push((key("range"), range.clone()));
                if let Some(digits) = digits {
                    properties.push((key("digits"), digits.to_string()));
                }
            }
        }
    }
    properties.push((
        "storage.location.template".to_owned(),
        format!("{location}{}", layout.template),
    ));
    properties
}

/// The reserved `_spillway_` columns the format writes, after the user's.
fn reserved_columns(parquet: &ParquetFormat) -> Vec<(String, String)> {
    let mut columns = Vec::new();
    if parquet.metadata_columns {
        for (name, ty) in [
            ("_spillway_source", "string"),
            ("_spillway_sequence_number", "string"),
            ("_spillway_subsequence_number", "bigint"),
            ("_spillway_output_index", "bigint"),
            ("_spillway_partition_key", "string"),
            ("_spillway_arrival", "timestamp"),
        ] {
            columns.push((name.to_owned(), ty.to_owned()));
        }
    }
    if parquet.keep_original {
        columns.push(("_spillway_data".to_owned(), "string".to_owned()));
        if parquet.elide_rebuildable_original {
            columns.push(("_spillway_nulls".to_owned(), "string".to_owned()));
        }
    }
    columns
}

fn column_list(columns: &[(String, String)]) -> String {
    let lines: Vec<String> = columns.iter().map(|(n, t)| format!("  `{n}` {t}")).collect();
    lines.join(",\n") + "\n"
}

/// The Hive type of a column, as Athena's DDL spells it.
fn hive_type(ty: &ColumnType, path: &str, problems: &mut Vec<String>) -> String {
    match ty {
        ColumnType::String => "string".into(),
        ColumnType::Boolean => "boolean".into(),
        ColumnType::Int32 => "int".into(),
        ColumnType::Int64 => "bigint".into(),
        ColumnType::Float => "float".into(),
        ColumnType::Double => "double".into(),
        ColumnType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
        ColumnType::Date => "date".into(),
        ColumnType::Timestamp(_) => "timestamp".into(),
        ColumnType::List(item) => format!("array<{}>", hive_type(item, &format!("{path}[]"), problems)),
        ColumnType::Map(value) => format!("map<string,{}>", hive_type(value, &format!("{path}{{}}"), problems)),
        ColumnType::Struct(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|field| {
                    let field_path = format!("{path}.{}", field.name);
                    check_name(&field.name, &format!("struct field {field_path:?}, named"), problems);
                    // Hive reads a bare name only if it starts with a
                    // letter or a digit.
                    let bare = field.name.starts_with(|c: char| c.is_ascii_alphanumeric());
                    let name = match bare {
                        true => field.name.clone(),
                        false => format!("`{}`", field.name),
                    };
                    format!("{name}:{}", hive_type(&field.ty, &field_path, problems))
                })
                .collect();
            format!("struct<{}>", fields.join(","))
        }
    }
}

/// Reports a name Athena cannot take.
fn check_name(name: &str, what: &str, problems: &mut Vec<String>) {
    let fits = !name.is_empty() && name.len() <= 255 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !fits {
        problems.push(format!(
            "{what} {name:?}: Athena takes names of letters, digits and underscores only, 1 to 255 characters"
        ));
    }
}

/// A string literal of the DDL.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}
