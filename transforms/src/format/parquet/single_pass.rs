//! Inference and conversion in one parse, for the buffers of a stream whose
//! shape holds still.
//!
//! Without a schema file, each buffer's schema is inferred from its own
//! records ([`super::infer`]) and the records are then converted under it
//! ([`super::convert`]): two parses per record. Consecutive buffers of a
//! stream mostly infer the same schema, so once a buffer's schema is known,
//! the next buffer is parsed once: each record's shape is merged into the
//! buffer's own inference while its values are converted under the previous
//! schema. If the buffer's inferred schema then equals the previous one, the
//! conversion is exactly what converting under the buffer's own schema would
//! give, and stands. Otherwise the buffer is converted again under its own
//! schema: the output never depends on earlier buffers. (A pipeline writes
//! under its table schema instead, see `super::table`, whose single pass
//! stands when the buffer brings no column the table lacks.)
//!
//! A first buffer has no previous schema: if it is large (at least
//! [`super::MIN_SAMPLED_BATCH_BYTES`]), the schema of its first records
//! (1/16 of its bytes) stands in for one, and the conversion stands only if
//! the buffer infers exactly that schema, column order included: the file
//! is then byte for byte the one two passes write. The sample costs one
//! extra parse of 1/16 of the buffer; a buffer whose later records bring
//! new keys costs that plus one extra conversion.
//!
//! "Equals" (between buffers) ignores the order of columns, at every level: a buffer whose
//! records list their keys in another order than the previous buffer's
//! first records did keeps the previous column order (the values are the
//! same, only the order of the columns in the file differs). So a stream's
//! files keep one column order while its shape holds.
//!
//! Both sides follow their own module's rules: shapes merge as in
//! [`super::infer`] (first shape wins, int and float make double, ...),
//! values convert as in [`super::convert`], a value that the speculative
//! column does not stream (an object for a string column) is converted from
//! its tree. Where the two disagree on a value's structure (an object where
//! the previous schema has a list, say), the inferred schema cannot equal
//! the previous one; the record is refused on the conversion side, which
//! keeps the builders whole, and the buffer is converted again.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::convert::smallvec_free::Slots;
use super::convert::{AppendError, Children, ColumnBuilder, ConvertError, Failure, KeyRules, Kind, RowBuilder};
use super::infer::{merge_scalar, merge_value, Cursor, Fields, Inference, Room, Shape, ShapeSeed};
use super::json::{Json, JsonVisitor, Key};
use super::schema::{Column, ColumnType};
use crate::strict::{nests_deeper_than, StrictAny, MAX_DEPTH};

/// Whether `a` and `b` have the same columns with the same types, in any
/// order (at every level).
pub fn same_columns(a: &[Column], b: &[Column]) -> bool {
    a.len() == b.len()
        && a.iter().all(|column| {
            b.iter()
                .find(|other| other.name == column.name)
                .is_some_and(|other| same_type(&column.ty, &other.ty))
        })
}

fn same_type(a: &ColumnType, b: &ColumnType) -> bool {
    match (a, b) {
        (ColumnType::Struct(a), ColumnType::Struct(b)) => same_columns(a, b),
        (ColumnType::List(a), ColumnType::List(b)) | (ColumnType::Map(a), ColumnType::Map(b)) => same_type(a, b),
        (a, b) => a == b,
    }
}

/// The code of a record refused because the previous schema and this
/// buffer's shapes disagree; never written: such a buffer is converted
/// again.
pub const DIVERGED: &str = "Parquet.SchemaChanged";

impl RowBuilder {
    /// Parses one record once: merges its shape into `inference` and
    /// appends it under this builder's (speculative) columns, or leaves the
    /// columns as they were and says why not.
    pub fn append_and_infer(&mut self, bytes: &[u8], inference: &mut Inference) -> Result<(), AppendError> {
        let text = match simdutf8::compat::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => {
                inference.add_text(bytes, &self.rules);
                return Err(AppendError::NotUtf8(err));
            }
        };
        // Neither inferred nor converted, as `add_text` skips it.
        if nests_deeper_than(bytes, MAX_DEPTH) {
            return Err(AppendError::TooDeep);
        }
        let mut failure = None;
        let mut deserializer = sonic_rs::Deserializer::from_str(text);
        let parsed = deserializer
            .deserialize_any(TopBoth {
                fields: &mut inference.top,
                children: &mut self.children,
                rules: &self.rules,
                room: &inference.room,
                failure: &mut failure,
            })
            .and_then(|()| deserializer.end());
        match (parsed, failure) {
            (Ok(()), None) => {
                self.len += 1;
                Ok(())
            }
            (Ok(()), Some(refused)) => {
                self.children.truncate(self.len);
                Err(AppendError::Convert(refused))
            }
            (Err(err), _) => {
                self.children.truncate(self.len);
                Err(AppendError::Malformed(err))
            }
        }
    }
}

/// The first failure of a record stands; the parse goes on for the
/// inference.
fn record_failure(failure: &mut Failure, err: ConvertError) {
    if failure.is_none() {
        *failure = Some(err);
    }
}

fn diverged(path: &str) -> ConvertError {
    ConvertError {
        code: DIVERGED,
        message: format!("column \"{path}\": the buffer's shape differs from the previous schema"),
    }
}

/// Converts a value that is not streamed (a scalar, or a tree for a column
/// that takes it whole) with the tree rules.
fn convert_whole(builder: Option<&mut ColumnBuilder>, value: &Json, rules: &KeyRules, failure: &mut Failure) {
    if let Some(builder) = builder {
        if let Err(err) = builder.append(value, rules) {
            record_failure(failure, err);
        }
    }
}

/// A record's top level.
struct TopBoth<'a, 'r> {
    fields: &'a mut Fields,
    children: &'a mut Children,
    rules: &'r KeyRules,
    failure: &'a mut Failure,
    room: &'r Room,
}

impl TopBoth<'_, '_> {
    fn not_an_object(self, record: Json) {
        record_failure(
            self.failure,
            ConvertError {
                code: "Parquet.NotAnObject",
                message: format!("record is {}, not a JSON object: {}", record.kind(), record.preview()),
            },
        );
    }
}

impl<'de> Visitor<'de> for TopBoth<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        both_object(
            self.fields,
            Some(self.children),
            &mut map,
            self.rules,
            true,
            self.failure,
            self.room,
        )
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let record = JsonVisitor.visit_seq(seq)?;
        self.not_an_object(record);
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_an_object(Json::Null);
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.not_an_object(Json::Bool(v));
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.not_an_object(Json::Int(v));
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.not_an_object(JsonVisitor.visit_u64(v)?);
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.not_an_object(Json::Float(v));
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.not_an_object(Json::Str(Cow::Borrowed(v)));
        Ok(())
    }
}

/// One object: its keys merge into `fields` (the inference) and feed the
/// columns of `children` (the conversion; `None` once the record failed or
/// where the previous schema has no such struct).
fn both_object<'de, A: MapAccess<'de>>(
    fields: &mut Fields,
    mut children: Option<&mut Children>,
    map: &mut A,
    rules: &KeyRules,
    top: bool,
    failure: &mut Failure,
    room: &Room,
) -> Result<(), A::Error> {
    // Every child holds one value per row so far.
    let rows = children
        .as_deref()
        .and_then(|c| c.builders.first())
        .map_or(0, ColumnBuilder::len);
    let mut seen = Slots::new(children.as_deref().map_or(0, |c| c.builders.len()));
    let mut position = 0;
    let mut cursor = Cursor::default();
    while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
        let shape_index = fields.index_of(position, &key, rules, top, room, &mut cursor);
        let builder = match (failure.is_none(), children.as_deref_mut()) {
            (true, Some(children)) => match children.find(position, &key, rules) {
                Some(index) => {
                    if seen.get(index) != usize::MAX {
                        // A repeated key: its last value wins.
                        children.builders[index].truncate(rows);
                    }
                    seen.set(index, position);
                    Some(&mut children.builders[index])
                }
                None => None,
            },
            _ => None,
        };
        match shape_index {
            Some(index) => map.next_value_seed(BothSeed {
                shape: &mut fields.columns[index].1,
                builder,
                rules,
                failure,
                room,
            })?,
            None => {
                // A reserved top-level key: neither inferred nor converted
                // (the previous schema, inferred too, has no such column).
                map.next_value::<StrictAny>()?;
            }
        }
        position += 1;
    }
    if failure.is_none() {
        if let Some(children) = children {
            for (index, builder) in children.builders.iter_mut().enumerate() {
                if seen.get(index) == usize::MAX {
                    builder.append_null();
                }
            }
        }
    }
    Ok(())
}

/// Where an array or object goes.
enum Route<'a> {
    /// The record failed, or the previous schema has no column here.
    InferOnly,
    /// The column does not stream it: it is converted from its tree.
    Whole(&'a mut ColumnBuilder),
    /// Walked into the column's children as it is parsed.
    Stream(&'a mut ColumnBuilder),
}

fn route<'a>(builder: Option<&'a mut ColumnBuilder>, failure: &Failure, streams: impl Fn(&Kind) -> bool) -> Route<'a> {
    match builder {
        Some(builder) if failure.is_none() => {
            if streams(&builder.kind) {
                Route::Stream(builder)
            } else {
                Route::Whole(builder)
            }
        }
        _ => Route::InferOnly,
    }
}

/// A nested value the column does not stream: converted from its tree, and
/// inferred from it by the same rules.
fn whole(
    shape: &mut Shape,
    builder: &mut ColumnBuilder,
    value: &Json,
    rules: &KeyRules,
    failure: &mut Failure,
    room: &Room,
) {
    merge_value(shape, value, rules, room);
    convert_whole(Some(builder), value, rules, failure);
}

/// One value: its shape merged into `shape`, its value into `builder`.
struct BothSeed<'a, 'r> {
    shape: &'a mut Shape,
    builder: Option<&'a mut ColumnBuilder>,
    rules: &'r KeyRules,
    failure: &'a mut Failure,
    room: &'r Room,
}

impl BothSeed<'_, '_> {
    fn scalar(self, shape: Shape, value: Json) {
        merge_scalar(self.shape, shape);
        let builder = self.builder.filter(|_| self.failure.is_none());
        convert_whole(builder, &value, self.rules, self.failure);
    }
}

impl<'de> DeserializeSeed<'de> for BothSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BothSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        if self.failure.is_none() {
            if let Some(builder) = self.builder {
                builder.append_null();
            }
        }
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Shape::Bool, Json::Bool(v));
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(Shape::Int, Json::Int(v));
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        let value = JsonVisitor.visit_u64(v)?;
        let shape = if matches!(value, Json::Int(_)) {
            Shape::Int
        } else {
            Shape::Float
        };
        self.scalar(shape, value);
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(Shape::Float, Json::Float(v));
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(Shape::Str, Json::Str(Cow::Borrowed(v)));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let BothSeed {
            shape,
            builder,
            rules,
            failure,
            room,
        } = self;
        let builder = match route(builder, failure, |kind| matches!(kind, Kind::List { .. })) {
            Route::InferOnly => return ShapeSeed { shape, rules, room }.visit_seq(seq),
            Route::Whole(builder) => {
                let value = JsonVisitor.visit_seq(seq)?;
                whole(shape, builder, &value, rules, failure, room);
                return Ok(());
            }
            Route::Stream(builder) => builder,
        };
        if *shape == Shape::Null {
            *shape = Shape::List(Box::new(Shape::Null));
        }
        let Shape::List(item_shape) = shape else {
            // Another shape came first in this buffer: its schema differs.
            record_failure(failure, diverged(builder.path()));
            return ShapeSeed { shape, rules, room }.visit_seq(seq);
        };
        let Kind::List {
            offsets,
            validity,
            item,
            ..
        } = &mut builder.kind
        else {
            unreachable!("checked above")
        };
        while seq
            .next_element_seed(BothSeed {
                shape: item_shape,
                builder: Some(item),
                rules,
                failure,
                room,
            })?
            .is_some()
        {}
        if failure.is_none() {
            offsets.push(item.len() as i32);
            validity.push(true);
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let BothSeed {
            shape,
            builder,
            rules,
            failure,
            room,
        } = self;
        // A string column (JSON text), a scalar (an error) or a map
        // (inference never makes a map, so the previous schema has none)
        // takes the object whole.
        let builder = match route(builder, failure, |kind| matches!(kind, Kind::Struct { .. })) {
            Route::InferOnly => return ShapeSeed { shape, rules, room }.visit_map(map),
            Route::Whole(builder) => {
                let value = JsonVisitor.visit_map(map)?;
                whole(shape, builder, &value, rules, failure, room);
                return Ok(());
            }
            Route::Stream(builder) => builder,
        };
        if *shape == Shape::Null {
            *shape = Shape::Struct(Fields::default());
        }
        let Shape::Struct(fields) = shape else {
            record_failure(failure, diverged(builder.path()));
            return ShapeSeed { shape, rules, room }.visit_map(map);
        };
        let Kind::Struct {
            children,
            validity,
            len,
        } = &mut builder.kind
        else {
            unreachable!("checked above")
        };
        both_object(fields, Some(children), &mut map, rules, false, failure, room)?;
        if failure.is_none() {
            validity.push(true);
            *len += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::format::parquet::schema::struct_fields;

    fn rules() -> KeyRules {
        KeyRules::default()
    }

    fn batch(columns: &[Column], rows: &mut RowBuilder) -> arrow_array::RecordBatch {
        let schema = arrow_schema::Schema::new(struct_fields(columns));
        arrow_array::RecordBatch::try_new(std::sync::Arc::new(schema), rows.finish()).unwrap()
    }

    /// Infers `lines`, then converts and infers them again in one pass under
    /// that schema: the inference is the same, and so is the conversion.
    fn agree(lines: &[String]) -> (usize, usize) {
        let mut inference = Inference::default();
        for line in lines {
            inference.add_text(line.as_bytes(), &rules());
        }
        let columns = inference.columns();
        let mut separate = RowBuilder::new(&columns, rules(), &HashMap::new());
        let mut single = RowBuilder::new(&columns, rules(), &HashMap::new());
        let mut single_inference = Inference::default();
        let mut refused = 0;
        for line in lines {
            let a = separate.append_text(line.as_bytes()).map_err(|e| format!("{e:?}"));
            let b = single
                .append_and_infer(line.as_bytes(), &mut single_inference)
                .map_err(|e| format!("{e:?}"));
            assert_eq!(a, b, "{line}");
            refused += a.is_err() as usize;
        }
        assert_eq!(single_inference.columns(), columns);
        let rows = separate.len();
        assert_eq!(batch(&columns, &mut single), batch(&columns, &mut separate));
        (rows, refused)
    }

    #[test]
    fn one_parse_infers_and_converts_as_two_do() {
        let mut lines = crate::format::parquet::tests::twitter_statuses();
        // Refused records, inside and outside the shapes seen first.
        lines.extend(
            [
                r#"{"id":1,"user":[1,{"a":null}],"text":{"t":1},"entities":{"hashtags":"none"}}"#,
                r#"{"id":2,"entities":{"hashtags":[{"text":"a","indices":[1,"x"]}]},"retweet_count":"3"}"#,
                r#"{"id":3,"entities":{"hashtags":[{"text":"a","indices":[1,2]}],"urls":5},"geo":{"x":1}}"#,
                r#"[1,2]"#,
                r#"{"id":4,"id":"again","metadata":{"iso_language_code":null}}"#,
                r#"{"id":5,"user":{"id":1},"#,
                "{\"id\":6,\"text\":\"\\u00e9\\\"\"}",
                r#"{"_spillway_data":"reserved","id":7}"#,
                r#"{"id":8,"retweet_count":18446744073709551615}"#,
            ]
            .map(String::from),
        );
        let (rows, refused) = agree(&lines);
        assert!(rows >= 100 && refused >= 3, "{rows} rows, {refused} refused");
    }

    #[test]
    fn a_changed_shape_is_seen_and_never_written() {
        let previous = r#"{"a":1,"b":[1],"c":{"x":"s"}}"#;
        let mut inference = Inference::default();
        inference.add_text(previous.as_bytes(), &rules());
        let columns = inference.columns();
        for (line, same) in [
            (r#"{"a":2,"b":[2,3],"c":{"x":"t"}}"#, true),
            (r#"{"a":2.5,"b":[2],"c":{"x":"t"}}"#, false),
            (r#"{"a":2,"b":{"n":1},"c":{"x":"t"}}"#, false),
            (r#"{"a":2,"b":[2],"c":"flat"}"#, false),
            (r#"{"a":2,"b":[2],"c":{"x":"t"},"d":true}"#, false),
            // Another order only: the same columns.
            (r#"{"c":{"x":"t"},"a":2,"b":[2]}"#, true),
            (r#"{"a":2,"b":[2],"c":{"x":"t","y":1}}"#, false),
            (r#"{"a":2,"b":[2]}"#, false),
        ] {
            let mut rows = RowBuilder::new(&columns, rules(), &HashMap::new());
            let mut this = Inference::default();
            let result = rows.append_and_infer(line.as_bytes(), &mut this);
            assert_eq!(same_columns(&this.columns(), &columns), same, "{line}");
            if let Err(AppendError::Convert(err)) = &result {
                assert!(!same, "{line}: {err:?}");
            }
            // Whatever happened, the builders are whole.
            batch(&columns, &mut rows);
        }
    }
}
