//! One column being filled: a builder per column type (with nested
//! builders for lists, structs and maps) that appends a JSON value by the
//! OpenX rules, truncates back to a row count when a record is refused,
//! and hands its values over as an Arrow array. Every path (the tree, the
//! parser, the flat path) ends in these builders, so the Arrow layout is
//! made in one place.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::types::*;
use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int32Array, Int64Array,
    ListArray, MapArray, PrimitiveArray, StructArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{FieldRef, TimeUnit};

use super::scalar::{float, integer, mismatch, nesting, parse_decimal};
use super::vectors::{take_nulls, take_sized, Prim, Strings, Validity};
use super::{Children, ConvertError, KeyRules};
use crate::format::parquet::json::Json;
use crate::format::parquet::schema::{map_entries_field, ColumnType};
use crate::format::parquet::timestamp;

/// A column being filled.
#[derive(Debug)]
pub struct ColumnBuilder {
    /// Dotted path, for error messages: `user.id`, `tags[]`, `attrs{}`.
    path: Arc<str>,
    pub(in crate::format::parquet) kind: Kind,
}

#[derive(Debug)]
pub(in crate::format::parquet) enum Kind {
    String(Strings),
    Boolean(Prim<bool>),
    Int32(Prim<i32>),
    Int64(Prim<i64>),
    Float(Prim<f32>),
    Double(Prim<f64>),
    Decimal(Prim<i128>, u8, i8),
    Date(Prim<i32>),
    Timestamp(Prim<i64>, TimeUnit),
    List {
        field: FieldRef,
        offsets: Vec<i32>,
        validity: Validity,
        item: Box<ColumnBuilder>,
    },
    Struct {
        children: Children,
        validity: Validity,
        len: usize,
    },
    Map {
        entries: FieldRef,
        offsets: Vec<i32>,
        validity: Validity,
        keys: Strings,
        values: Box<ColumnBuilder>,
    },
}

impl ColumnBuilder {
    pub fn new(path: &str, ty: &ColumnType, rules: &KeyRules) -> Self {
        let kind = match ty {
            ColumnType::String => Kind::String(Strings::new()),
            ColumnType::Boolean => Kind::Boolean(Prim::new()),
            ColumnType::Int32 => Kind::Int32(Prim::new()),
            ColumnType::Int64 => Kind::Int64(Prim::new()),
            ColumnType::Float => Kind::Float(Prim::new()),
            ColumnType::Double => Kind::Double(Prim::new()),
            ColumnType::Decimal { precision, scale } => Kind::Decimal(Prim::new(), *precision, *scale),
            ColumnType::Date => Kind::Date(Prim::new()),
            ColumnType::Timestamp(unit) => Kind::Timestamp(Prim::new(), *unit),
            ColumnType::List(item) => Kind::List {
                field: match ty.arrow() {
                    arrow_schema::DataType::List(field) => field,
                    _ => unreachable!("a list column is an Arrow list"),
                },
                offsets: vec![0],
                validity: Validity::new(),
                item: Box::new(ColumnBuilder::new(&format!("{path}[]"), item, rules)),
            },
            ColumnType::Struct(columns) => Kind::Struct {
                children: Children::new(path, columns, rules, None),
                validity: Validity::new(),
                len: 0,
            },
            ColumnType::Map(value) => Kind::Map {
                entries: map_entries_field(value),
                offsets: vec![0],
                validity: Validity::new(),
                keys: Strings::new(),
                values: Box::new(ColumnBuilder::new(&format!("{path}{{}}"), value, rules)),
            },
        };
        Self {
            path: path.into(),
            kind,
        }
    }

    /// The column's dotted path, for error messages.
    pub(in crate::format::parquet) fn path(&self) -> &str {
        &self.path
    }

    pub fn len(&self) -> usize {
        match &self.kind {
            Kind::String(s) => s.len(),
            Kind::Boolean(p) => p.valid.len(),
            Kind::Int32(p) | Kind::Date(p) => p.valid.len(),
            Kind::Int64(p) | Kind::Timestamp(p, _) => p.valid.len(),
            Kind::Float(p) => p.valid.len(),
            Kind::Double(p) => p.valid.len(),
            Kind::Decimal(p, _, _) => p.valid.len(),
            Kind::List { validity, .. } | Kind::Map { validity, .. } => validity.valid.len(),
            Kind::Struct { len, .. } => *len,
        }
    }

    pub fn append_null(&mut self) {
        match &mut self.kind {
            Kind::String(s) => s.push_null(),
            Kind::Boolean(p) => p.push_null(),
            Kind::Int32(p) | Kind::Date(p) => p.push_null(),
            Kind::Int64(p) | Kind::Timestamp(p, _) => p.push_null(),
            Kind::Float(p) => p.push_null(),
            Kind::Double(p) => p.push_null(),
            Kind::Decimal(p, _, _) => p.push_null(),
            Kind::List { offsets, validity, .. } | Kind::Map { offsets, validity, .. } => {
                offsets.push(*offsets.last().expect("offsets start with 0"));
                validity.push(false);
            }
            Kind::Struct {
                children,
                validity,
                len,
            } => {
                children.append_null();
                validity.push(false);
                *len += 1;
            }
        }
    }

    /// Appends one value. On error the column may hold part of the value:
    /// the caller truncates back to the length it had.
    pub fn append(&mut self, value: &Json, rules: &KeyRules) -> Result<(), ConvertError> {
        if matches!(value, Json::Null) {
            self.append_null();
            return Ok(());
        }
        let path = &*self.path;
        match &mut self.kind {
            Kind::String(s) => match value {
                Json::Str(text) => s.push(text),
                other => {
                    let mut text = String::new();
                    other.write_json(&mut text);
                    s.push(&text);
                }
            },
            Kind::Boolean(p) => match value {
                Json::Bool(b) => p.push(*b),
                Json::Str(t) if t.eq_ignore_ascii_case("true") => p.push(true),
                Json::Str(t) if t.eq_ignore_ascii_case("false") => p.push(false),
                other => return Err(mismatch(path, other, "a boolean")),
            },
            Kind::Int32(p) => {
                let n = integer(value).ok_or_else(|| mismatch(path, value, "an int32"))?;
                let n = i32::try_from(n).map_err(|_| ConvertError {
                    code: "Parquet.TypeMismatch",
                    message: format!("column \"{path}\": {n} is out of range for int32"),
                })?;
                p.push(n);
            }
            Kind::Int64(p) => p.push(integer(value).ok_or_else(|| mismatch(path, value, "an int64"))?),
            Kind::Float(p) => p.push(float(value).ok_or_else(|| mismatch(path, value, "a float"))? as f32),
            Kind::Double(p) => p.push(float(value).ok_or_else(|| mismatch(path, value, "a double"))?),
            Kind::Decimal(p, precision, scale) => {
                let what = || format!("a decimal({precision},{scale})");
                let text: Cow<str> = match value {
                    Json::Str(t) => Cow::Borrowed(t.as_ref()),
                    Json::Int(n) => Cow::Owned(n.to_string()),
                    Json::UInt(n) => Cow::Owned(n.to_string()),
                    Json::Float(f) => Cow::Owned(f.to_string()),
                    other => return Err(mismatch(path, other, &what())),
                };
                let n = parse_decimal(&text, *precision, *scale).ok_or_else(|| mismatch(path, value, &what()))?;
                p.push(n);
            }
            Kind::Date(p) => {
                let days = match value {
                    Json::Str(t) => timestamp::parse_date_days(t),
                    Json::Int(n) => i32::try_from(*n).ok(),
                    _ => None,
                };
                p.push(days.ok_or_else(|| mismatch(path, value, "a date"))?);
            }
            Kind::Timestamp(p, unit) => {
                let nanos = match value {
                    Json::Str(t) => timestamp::parse_timestamp_nanos(t),
                    Json::Int(n) => Some(timestamp::epoch_integer_nanos(*n)),
                    Json::Float(f) => timestamp::epoch_number_nanos(*f),
                    _ => None,
                };
                let count = nanos.and_then(|n| timestamp::nanos_to_unit(n, *unit));
                p.push(count.ok_or_else(|| mismatch(path, value, "a timestamp"))?);
            }
            Kind::List {
                offsets,
                validity,
                item,
                ..
            } => {
                let Json::Array(items) = value else {
                    return Err(nesting(path, value, "a list"));
                };
                for element in items {
                    item.append(element, rules)?;
                }
                offsets.push(item.len() as i32);
                validity.push(true);
            }
            Kind::Struct {
                children,
                validity,
                len,
            } => {
                let Json::Object(entries) = value else {
                    return Err(nesting(path, value, "a struct (an object)"));
                };
                children.append_object(entries, rules)?;
                validity.push(true);
                *len += 1;
            }
            Kind::Map {
                offsets,
                validity,
                keys,
                values,
                ..
            } => {
                let Json::Object(entries) = value else {
                    return Err(nesting(path, value, "a map (an object)"));
                };
                for (key, entry) in entries {
                    keys.push(key);
                    values.append(entry, rules)?;
                }
                offsets.push(keys.len() as i32);
                validity.push(true);
            }
        }
        Ok(())
    }

    pub fn truncate(&mut self, len: usize) {
        match &mut self.kind {
            Kind::String(s) => s.truncate(len),
            Kind::Boolean(p) => p.truncate(len),
            Kind::Int32(p) | Kind::Date(p) => p.truncate(len),
            Kind::Int64(p) | Kind::Timestamp(p, _) => p.truncate(len),
            Kind::Float(p) => p.truncate(len),
            Kind::Double(p) => p.truncate(len),
            Kind::Decimal(p, _, _) => p.truncate(len),
            Kind::List {
                offsets,
                validity,
                item,
                ..
            } => {
                offsets.truncate(len + 1);
                validity.truncate(len);
                item.truncate(*offsets.last().expect("offsets start with 0") as usize);
            }
            Kind::Map {
                offsets,
                validity,
                keys,
                values,
                ..
            } => {
                offsets.truncate(len + 1);
                validity.truncate(len);
                let entries = *offsets.last().expect("offsets start with 0") as usize;
                keys.truncate(entries);
                values.truncate(entries);
            }
            Kind::Struct {
                children,
                validity,
                len: own,
            } => {
                children.truncate(len);
                validity.truncate(len);
                *own = len.min(*own);
            }
        }
    }

    /// The column's values so far as an Arrow array; the builder is left
    /// empty.
    pub fn finish(&mut self) -> ArrayRef {
        match &mut self.kind {
            Kind::String(s) => Arc::new(s.finish()),
            Kind::Boolean(p) => {
                let nulls = take_nulls(&mut p.valid, &mut p.nulls);
                let values = take_sized(&mut p.values);
                Arc::new(BooleanArray::new(values.into(), nulls))
            }
            Kind::Int32(p) => {
                let (values, nulls) = p.take();
                Arc::new(Int32Array::new(values, nulls))
            }
            Kind::Date(p) => {
                let (values, nulls) = p.take();
                Arc::new(Date32Array::new(values, nulls))
            }
            Kind::Int64(p) => {
                let (values, nulls) = p.take();
                Arc::new(Int64Array::new(values, nulls))
            }
            Kind::Timestamp(p, unit) => {
                let (values, nulls) = p.take();
                match unit {
                    TimeUnit::Second => timestamp_array::<TimestampSecondType>(values, nulls),
                    TimeUnit::Millisecond => timestamp_array::<TimestampMillisecondType>(values, nulls),
                    TimeUnit::Microsecond => timestamp_array::<TimestampMicrosecondType>(values, nulls),
                    TimeUnit::Nanosecond => timestamp_array::<TimestampNanosecondType>(values, nulls),
                }
            }
            Kind::Float(p) => {
                let (values, nulls) = p.take();
                Arc::new(Float32Array::new(values, nulls))
            }
            Kind::Double(p) => {
                let (values, nulls) = p.take();
                Arc::new(Float64Array::new(values, nulls))
            }
            Kind::Decimal(p, precision, scale) => {
                let (values, nulls) = p.take();
                Arc::new(
                    Decimal128Array::new(values, nulls)
                        .with_precision_and_scale(*precision, *scale)
                        .expect("precision and scale were checked with the schema"),
                )
            }
            Kind::List {
                field,
                offsets,
                validity,
                item,
            } => {
                let taken = take_sized(offsets);
                offsets.push(0);
                let offsets = taken;
                Arc::new(ListArray::new(
                    field.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    item.finish(),
                    validity.take(),
                ))
            }
            Kind::Struct {
                children,
                validity,
                len,
            } => {
                *len = 0;
                let nulls = validity.take();
                Arc::new(StructArray::new(children.fields.clone(), children.finish(), nulls))
            }
            Kind::Map {
                entries,
                offsets,
                validity,
                keys,
                values,
            } => {
                let taken = take_sized(offsets);
                offsets.push(0);
                let offsets = taken;
                let arrow_schema::DataType::Struct(entry_fields) = entries.data_type() else {
                    unreachable!("map entries are a struct")
                };
                let entry_array = StructArray::new(
                    entry_fields.clone(),
                    vec![Arc::new(keys.finish()), values.finish()],
                    None,
                );
                Arc::new(MapArray::new(
                    entries.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    entry_array,
                    validity.take(),
                    false,
                ))
            }
        }
    }
}

fn timestamp_array<T: ArrowTimestampType>(values: ScalarBuffer<i64>, nulls: Option<NullBuffer>) -> ArrayRef {
    Arc::new(PrimitiveArray::<T>::new(values, nulls).with_timezone("UTC"))
}
