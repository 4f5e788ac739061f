//! JSON values into Arrow columns, after Firehose's OpenX JSON SerDe.
//!
//! Each column is a small builder of plain vectors that can be truncated, so
//! a record that fails half-way (say its third column holds "abc" for an
//! int64) is rolled back and reported alone while the rest of the batch is
//! written.
//!
//! Conversions, by column type (`null` or a missing key is a null in every
//! column):
//! - `string`: strings as they are; numbers and booleans as their JSON text;
//!   objects and arrays as their compact JSON text.
//! - `boolean`: `true`/`false`, or the strings "true"/"false" (any case).
//! - `int32`/`int64`: integers in range, numbers with no fraction (`3.0`),
//!   strings holding an integer.
//! - `float`/`double`: any number, strings holding a number.
//! - `decimal(p,s)`: numbers and numeric strings, rounded half up to `s`
//!   digits; more than `p` digits is an error.
//! - `date`: `yyyy-MM-dd` (or a timestamp string: its UTC date), or an
//!   integer count of days since 1970-01-01.
//! - `timestamp`: see [`super::timestamp`].
//! - `list<T>`: arrays; `struct<...>` and `map<string,T>`: objects.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::types::*;
use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int32Array, Int64Array,
    ListArray, MapArray, PrimitiveArray, StringArray, StructArray,
};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{FieldRef, Fields, TimeUnit};

mod flat;
mod stream;

pub(super) use flat::FlatPath;
pub use stream::AppendError;
pub(super) use stream::Failure;

use super::json::Json;
use super::schema::{map_entries_field, struct_fields, Column, ColumnType};
use super::timestamp;

/// How JSON keys are matched to column names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRules {
    /// Compare keys and column names ignoring case (OpenX default).
    pub case_insensitive: bool,
    /// Turn `.` in JSON keys into `_` before matching.
    pub dots_to_underscores: bool,
}

/// The OpenX JSON SerDe's defaults: case-insensitive, dots kept.
impl Default for KeyRules {
    fn default() -> Self {
        Self {
            case_insensitive: true,
            dots_to_underscores: false,
        }
    }
}

impl KeyRules {
    /// The key as it is matched against column names.
    pub fn normalize<'k>(&self, key: &'k str) -> Cow<'k, str> {
        let mut key = Cow::Borrowed(key);
        if self.dots_to_underscores && key.contains('.') {
            key = Cow::Owned(key.replace('.', "_"));
        }
        if self.case_insensitive && key.chars().any(char::is_uppercase) {
            key = Cow::Owned(key.to_lowercase());
        }
        key
    }
}

/// Why a value does not fit its column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    /// `Parquet.TypeMismatch` or `Parquet.NestingMismatch`.
    pub code: &'static str,
    pub message: String,
}

/// A scalar column refusing a value: a nesting mismatch if the value is
/// an object or an array.
fn mismatch(path: &str, value: &Json, what: &str) -> ConvertError {
    mismatch_in(path, value, what, false)
}

/// A list, struct or map column refusing a value: always a nesting mismatch.
fn nesting(path: &str, value: &Json, what: &str) -> ConvertError {
    mismatch_in(path, value, what, true)
}

fn mismatch_in(path: &str, value: &Json, what: &str, nested_column: bool) -> ConvertError {
    let nested_value = matches!(value, Json::Array(_) | Json::Object(_));
    let nested = nested_value || nested_column;
    ConvertError {
        code: if nested {
            "Parquet.NestingMismatch"
        } else {
            "Parquet.TypeMismatch"
        },
        message: if nested_value {
            format!("column \"{path}\": {} is not {what}: {}", value.kind(), value.preview())
        } else {
            format!("column \"{path}\": {} is not {what}", value.preview())
        },
    }
}

/// A column being filled.
#[derive(Debug)]
pub struct ColumnBuilder {
    /// Dotted path, for error messages: `user.id`, `tags[]`, `attrs{}`.
    path: Arc<str>,
    pub(super) kind: Kind,
}

#[derive(Debug)]
pub(super) struct Prim<T> {
    values: Vec<T>,
    valid: Vec<bool>,
    nulls: usize,
}

impl<T: Default + Copy> Prim<T> {
    fn new() -> Self {
        Self {
            values: Vec::new(),
            valid: Vec::new(),
            nulls: 0,
        }
    }
    fn push(&mut self, v: T) {
        self.values.push(v);
        self.valid.push(true);
    }
    fn push_null(&mut self) {
        self.values.push(T::default());
        self.valid.push(false);
        self.nulls += 1;
    }
    fn truncate(&mut self, len: usize) {
        if len < self.valid.len() {
            self.nulls -= self.valid[len..].iter().filter(|v| !**v).count();
        }
        self.values.truncate(len);
        self.valid.truncate(len);
    }
    fn take(&mut self) -> (ScalarBuffer<T>, Option<NullBuffer>)
    where
        T: arrow_buffer::ArrowNativeType,
    {
        let nulls = take_nulls(&mut self.valid, &mut self.nulls);
        (ScalarBuffer::from(take_sized(&mut self.values)), nulls)
    }
}

/// The vector's contents, leaving in its place an empty one with room for
/// as many: the next chunk of a column is about the size of the last, and
/// growing it from empty again would copy it several times.
pub(super) fn take_sized<T>(vector: &mut Vec<T>) -> Vec<T> {
    let room = vector.len();
    std::mem::replace(vector, Vec::with_capacity(room))
}

fn take_nulls(valid: &mut Vec<bool>, nulls: &mut usize) -> Option<NullBuffer> {
    let had_nulls = std::mem::replace(nulls, 0) > 0;
    if had_nulls {
        Some(NullBuffer::from(take_sized(valid)))
    } else {
        valid.clear();
        None
    }
}

#[derive(Debug)]
pub(super) struct Validity {
    valid: Vec<bool>,
    nulls: usize,
}

impl Validity {
    fn new() -> Self {
        Self {
            valid: Vec::new(),
            nulls: 0,
        }
    }
    pub(super) fn push(&mut self, v: bool) {
        self.valid.push(v);
        if !v {
            self.nulls += 1;
        }
    }
    fn truncate(&mut self, len: usize) {
        if len < self.valid.len() {
            self.nulls -= self.valid[len..].iter().filter(|v| !**v).count();
        }
        self.valid.truncate(len);
    }
    fn take(&mut self) -> Option<NullBuffer> {
        take_nulls(&mut self.valid, &mut self.nulls)
    }
}

/// A UTF-8 column: bytes and offsets, truncatable.
#[derive(Debug)]
pub(super) struct Strings {
    offsets: Vec<i32>,
    data: Vec<u8>,
    validity: Validity,
}

impl Strings {
    pub(super) fn new() -> Self {
        Self {
            offsets: vec![0],
            data: Vec::new(),
            validity: Validity::new(),
        }
    }
    pub(super) fn push(&mut self, s: &str) {
        self.data.extend_from_slice(s.as_bytes());
        self.offsets.push(self.data.len() as i32);
        self.validity.push(true);
    }
    pub(super) fn push_null(&mut self) {
        self.offsets.push(self.data.len() as i32);
        self.validity.push(false);
    }
    pub(super) fn len(&self) -> usize {
        self.offsets.len() - 1
    }
    pub(super) fn truncate(&mut self, len: usize) {
        self.offsets.truncate(len + 1);
        self.data
            .truncate(*self.offsets.last().expect("offsets start with 0") as usize);
        self.validity.truncate(len);
    }
    pub(super) fn finish(&mut self) -> StringArray {
        let offsets = take_sized(&mut self.offsets);
        self.offsets.push(0);
        let data = take_sized(&mut self.data);
        let nulls = self.validity.take();
        // SAFETY: offsets start at 0, never decrease and end at data.len();
        // data is the concatenation of `&str`s, so valid UTF-8 at every offset.
        unsafe {
            StringArray::new_unchecked(
                OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)),
                Buffer::from_vec(data),
                nulls,
            )
        }
    }
}

/// Named children matched by normalized name.
#[derive(Debug)]
pub(super) struct Children {
    fields: Fields,
    pub(super) builders: Vec<ColumnBuilder>,
    by_key: HashMap<Box<str>, usize>,
    hints: KeyHints,
}

/// Entry position in an object → the key found at that position last time,
/// as spelt in the record, and its column. Records of one stream mostly
/// list the same keys in the same order, so comparing a key with last
/// time's spelling usually replaces normalizing it and a hash lookup.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct KeyHints(Vec<Option<(usize, Box<str>)>>);

/// Entry positions remembered in [`KeyHints`].
const MAX_HINTS: usize = 1024;

impl KeyHints {
    /// The column of `key` at `position`, if it is spelt there as last time.
    pub(super) fn get(&self, position: usize, key: &str) -> Option<usize> {
        match self.0.get(position) {
            Some(Some((index, spelling))) if **spelling == *key => Some(*index),
            _ => None,
        }
    }

    /// Remembers that `key` at `position` feeds column `index`.
    pub(super) fn set(&mut self, position: usize, key: &str, index: usize) {
        if position >= MAX_HINTS {
            return;
        }
        if position >= self.0.len() {
            self.0.resize(position + 1, None);
        }
        self.0[position] = Some((index, key.into()));
    }
}

#[derive(Debug)]
pub(super) enum Kind {
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

impl Children {
    fn new(path: &str, columns: &[Column], rules: &KeyRules, keys: Option<&HashMap<String, String>>) -> Self {
        let mut by_key = HashMap::new();
        let mut builders = Vec::with_capacity(columns.len());
        for (index, column) in columns.iter().enumerate() {
            let child_path = if path.is_empty() {
                column.name.clone()
            } else {
                format!("{path}.{}", column.name)
            };
            builders.push(ColumnBuilder::new(&child_path, &column.ty, rules));
            let key = keys.and_then(|k| k.get(&column.name)).unwrap_or(&column.name);
            let key = if rules.case_insensitive {
                key.to_lowercase()
            } else {
                key.clone()
            };
            by_key.insert(key.into_boxed_str(), index);
        }
        Self {
            fields: struct_fields(columns),
            builders,
            by_key,
            hints: KeyHints::default(),
        }
    }

    /// The column fed by the key at `position` in its object.
    pub(super) fn find(&mut self, position: usize, key: &str, rules: &KeyRules) -> Option<usize> {
        if let Some(hint) = self.hints.get(position, key) {
            return Some(hint);
        }
        let found = self.lookup(key, rules);
        if let Some(index) = found {
            self.hints.set(position, key, index);
        }
        found
    }

    /// The column fed by `key`, by the key rules.
    pub(super) fn lookup(&self, key: &str, rules: &KeyRules) -> Option<usize> {
        match self.by_key.get(key) {
            Some(&index) => Some(index),
            None => match rules.normalize(key) {
                Cow::Borrowed(_) => None,
                Cow::Owned(k) => self.by_key.get(k.as_str()).copied(),
            },
        }
    }

    /// Appends one parsed object's entries, a null for each missing column
    /// (the tree rules; records take [`stream`]'s way).
    fn append_object(&mut self, entries: &[(Cow<str>, Json)], rules: &KeyRules) -> Result<(), ConvertError> {
        const NONE: usize = usize::MAX;
        // Which entry feeds each column (the last one, if a key repeats).
        let mut slots: smallvec_free::Slots = smallvec_free::Slots::new(self.builders.len());
        for (entry, (key, _)) in entries.iter().enumerate() {
            if let Some(index) = self.find(entry, key, rules) {
                slots.set(index, entry);
            }
        }
        for (index, builder) in self.builders.iter_mut().enumerate() {
            match slots.get(index) {
                NONE => builder.append_null(),
                entry => builder.append(&entries[entry].1, rules)?,
            }
        }
        Ok(())
    }

    fn append_null(&mut self) {
        for builder in &mut self.builders {
            builder.append_null();
        }
    }

    pub(super) fn truncate(&mut self, len: usize) {
        for builder in &mut self.builders {
            builder.truncate(len);
        }
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        self.builders.iter_mut().map(ColumnBuilder::finish).collect()
    }
}

/// Entry index per column without a heap allocation for small structs.
pub(super) mod smallvec_free {
    // On the stack by design: the small variant is the point.
    #[allow(clippy::large_enum_variant)]
    pub(in crate::format::parquet) enum Slots {
        Small([usize; 32]),
        Large(Vec<usize>),
    }

    impl Slots {
        pub(in crate::format::parquet) fn new(len: usize) -> Self {
            if len <= 32 {
                Slots::Small([usize::MAX; 32])
            } else {
                Slots::Large(vec![usize::MAX; len])
            }
        }
        pub(in crate::format::parquet) fn set(&mut self, index: usize, entry: usize) {
            match self {
                Slots::Small(a) => a[index] = entry,
                Slots::Large(v) => v[index] = entry,
            }
        }
        pub(in crate::format::parquet) fn get(&self, index: usize) -> usize {
            match self {
                Slots::Small(a) => a[index],
                Slots::Large(v) => v[index],
            }
        }
    }
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
    pub(super) fn path(&self) -> &str {
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

fn integer(value: &Json) -> Option<i64> {
    match value {
        Json::Int(n) => Some(*n),
        Json::Float(f) if f.fract() == 0.0 && *f >= -9.2e18 && *f <= 9.2e18 => Some(*f as i64),
        Json::Str(t) => t.trim().parse().ok(),
        _ => None,
    }
}

fn float(value: &Json) -> Option<f64> {
    match value {
        Json::Int(n) => Some(*n as f64),
        Json::UInt(n) => Some(*n as f64),
        Json::Float(f) => Some(*f),
        Json::Str(t) => t.trim().parse().ok(),
        _ => None,
    }
}

/// Decimal text (`-12.345`, `1e3` is refused) to an unscaled i128, rounded
/// half up to `scale` digits; `None` past `precision` digits.
fn parse_decimal(text: &str, precision: u8, scale: i8) -> Option<i128> {
    let text = text.trim();
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let scale = scale as usize;
    let mut unscaled: i128 = 0;
    for b in whole
        .bytes()
        .chain(fraction.bytes().chain(std::iter::repeat(b'0')).take(scale))
    {
        unscaled = unscaled.checked_mul(10)?.checked_add((b - b'0') as i128)?;
    }
    if fraction.len() > scale && fraction.as_bytes()[scale] >= b'5' {
        unscaled += 1;
    }
    if unscaled >= 10i128.pow(precision as u32) {
        return None;
    }
    Some(if negative { -unscaled } else { unscaled })
}

/// The top-level columns of a record: a struct without a validity of its
/// own, whose keys may be mapped (`column_to_json_key_mappings`).
#[derive(Debug)]
pub struct RowBuilder {
    pub(super) children: Children,
    pub(super) rules: KeyRules,
    pub(super) len: usize,
}

impl RowBuilder {
    pub fn new(columns: &[Column], rules: KeyRules, mappings: &HashMap<String, String>) -> Self {
        Self {
            children: Children::new("", columns, &rules, Some(mappings)),
            rules,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one record, or leaves the columns as they were and says why
    /// not.
    /// A parsed record, by the tree rules: tests compare it with
    /// [`Self::append_text`].
    #[cfg(test)]
    pub fn append(&mut self, record: &Json) -> Result<(), ConvertError> {
        let Json::Object(entries) = record else {
            return Err(ConvertError {
                code: "Parquet.NotAnObject",
                message: format!("record is {}, not a JSON object: {}", record.kind(), record.preview()),
            });
        };
        match self.children.append_object(entries, &self.rules) {
            Ok(()) => {
                self.len += 1;
                Ok(())
            }
            Err(err) => {
                self.children.truncate(self.len);
                Err(err)
            }
        }
    }

    /// The columns so far; the builder is left empty.
    pub fn finish(&mut self) -> Vec<ArrayRef> {
        self.len = 0;
        self.children.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, RecordBatch};

    fn rules() -> KeyRules {
        KeyRules::default()
    }

    fn schema(text: &str) -> Vec<Column> {
        let ColumnType::Struct(columns) = ColumnType::parse(&format!("struct<{text}>")).unwrap() else {
            panic!()
        };
        columns
    }

    /// The conversion error of a refused record.
    fn refused(result: Result<(), AppendError>) -> ConvertError {
        match result {
            Err(AppendError::Convert(err)) => err,
            other => panic!("expected a conversion error, got {other:?}"),
        }
    }

    fn to_batch(columns: &[Column], builder: &mut RowBuilder) -> RecordBatch {
        let fields = struct_fields(columns);
        RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), builder.finish()).unwrap()
    }

    #[test]
    fn a_bad_record_is_rolled_back_whole() {
        let columns = schema("id:int64,tags:list<string>,user:struct<name:string,age:int32>");
        let mut rows = RowBuilder::new(&columns, rules(), &HashMap::new());
        rows.append_text(br#"{"id":1,"tags":["a","b"],"user":{"name":"x","age":3}}"#)
            .unwrap();
        let err = refused(rows.append_text(br#"{"id":2,"tags":["c","d","e"],"user":{"name":"y","age":"abc"}}"#));
        assert_eq!(err.code, "Parquet.TypeMismatch");
        assert_eq!(err.message, "column \"user.age\": \"abc\" is not an int32");
        let err = refused(rows.append_text(br#"{"id":{"n":3}}"#));
        assert_eq!(err.code, "Parquet.NestingMismatch");
        assert_eq!(err.message, "column \"id\": an object is not an int64: {\"n\":3}");
        rows.append_text(br#"{"ID":4,"Tags":null}"#).unwrap();
        let batch = to_batch(&columns, &mut rows);
        assert_eq!(batch.num_rows(), 2);
        let ids = batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.values(), &[1, 4]);
        let tags = batch.column(1).as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(tags.value_offsets(), &[0, 2, 2]);
        assert!(tags.is_null(1));
        let items = tags.values().as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(items.len(), 2);
        let user = batch.column(2).as_any().downcast_ref::<StructArray>().unwrap();
        assert!(user.is_null(1));
        let names = user.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(names.value(0), "x");
    }

    #[test]
    fn openx_rules_for_scalars() {
        let columns = schema("s:string,b:boolean,i:int32,d:double,m:decimal(6,2),day:date,t:timestamp(ms)");
        let mut rows = RowBuilder::new(&columns, rules(), &HashMap::new());
        rows.append_text(
            br#"{"s":12.5,"b":"TRUE","i":"42","d":"1.5","m":"12.345","day":"2026-11-01","t":"2026-11-01 00:00:01.5"}"#,
        )
        .unwrap();
        rows.append_text(br#"{"s":{"a":[1]},"b":false,"i":7.0,"d":3,"m":1.005,"day":1,"t":1793491201}"#)
            .unwrap();
        assert!(refused(rows.append_text(br#"{"i":3000000000}"#))
            .message
            .contains("out of range for int32"));
        assert!(rows.append_text(br#"{"m":"12345.1"}"#).is_err());
        assert!(rows.append_text(br#"{"b":1}"#).is_err());
        assert!(rows.append_text(br#"{"t":"yesterday"}"#).is_err());
        assert_eq!(refused(rows.append_text(b"[1]")).code, "Parquet.NotAnObject");
        let batch = to_batch(&columns, &mut rows);
        let s = batch.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((s.value(0), s.value(1)), ("12.5", r#"{"a":[1]}"#));
        let m = batch.column(4).as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!((m.value(0), m.value(1)), (1235, 101));
        let t = batch
            .column(6)
            .as_any()
            .downcast_ref::<arrow_array::TimestampMillisecondArray>()
            .unwrap();
        assert_eq!((t.value(0), t.value(1)), (1_793_491_201_500, 1_793_491_201_000));
        let day = batch.column(5).as_any().downcast_ref::<Date32Array>().unwrap();
        assert_eq!(day.values(), &[20758, 1]);
    }

    #[test]
    fn key_rules_and_mappings() {
        let columns = schema("event_time:string,user_name:string,Tag:string");
        let mappings = HashMap::from([("event_time".to_owned(), "ts".to_owned())]);
        let dotted = KeyRules {
            case_insensitive: true,
            dots_to_underscores: true,
        };
        let mut rows = RowBuilder::new(&columns, dotted, &mappings);
        rows.append_text(br#"{"ts":"a","user.name":"b","TAG":"c","event_time":"ignored"}"#)
            .unwrap();
        let batch = to_batch(&columns, &mut rows);
        let col = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(0)
                .to_owned()
        };
        assert_eq!((col(0), col(1), col(2)), ("a".into(), "b".into(), "c".into()));

        let strict = KeyRules {
            case_insensitive: false,
            dots_to_underscores: false,
        };
        let mut rows = RowBuilder::new(&columns, strict, &HashMap::new());
        rows.append_text(br#"{"TAG":"c","user.name":"b"}"#).unwrap();
        let batch = to_batch(&columns, &mut rows);
        assert!(batch.column(1).is_null(0) && batch.column(2).is_null(0));
    }

    #[test]
    fn maps_and_nested_lists() {
        let columns = schema("attrs:map<string,int64>,grid:list<list<int32>>");
        let mut rows = RowBuilder::new(&columns, rules(), &HashMap::new());
        rows.append_text(br#"{"attrs":{"a":1,"B":2},"grid":[[1,2],[],[3]]}"#)
            .unwrap();
        let err = refused(rows.append_text(br#"{"attrs":{"a":1},"grid":[[1],[2,"x"]]}"#));
        assert_eq!(err.message, "column \"grid[][]\": \"x\" is not an int32");
        rows.append_text(br#"{"attrs":{}}"#).unwrap();
        let batch = to_batch(&columns, &mut rows);
        let attrs = batch.column(0).as_any().downcast_ref::<MapArray>().unwrap();
        assert_eq!(attrs.value_offsets(), &[0, 2, 2]);
        assert_eq!(
            attrs.keys().as_any().downcast_ref::<StringArray>().unwrap().value(1),
            "B"
        );
        let grid = batch.column(1).as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(grid.value_offsets(), &[0, 3, 3]);
        assert!(grid.is_null(1));
    }

    #[test]
    fn converting_as_parsed_agrees_with_converting_a_parsed_tree() {
        let mut lines = crate::format::parquet::tests::twitter_statuses();
        lines.push(
            r#"{"id":1,"text":"7","user":[1,{"a":null}],"retweet_count":"3","metadata":{"k":1,"j":[true]}}"#.into(),
        );
        lines.push(r#"{"id":2,"entities":{"hashtags":[{"text":"a","indices":[1,"x"]}]}}"#.into());
        lines.push(r#"{"id":3,"entities":{"hashtags":[{"text":"a","indices":[1,2]}],"urls":5}}"#.into());
        let mut inference = crate::format::parquet::infer::Inference::default();
        for line in &lines[..100] {
            inference.add_text(line.as_bytes(), &rules());
        }
        let inferred = inference.columns();
        // Columns that disagree with the statuses: JSON text in string
        // columns, numbers from strings, a failing int64 on every status.
        let disagreeing = schema(
            "id:string,user:string,entities:struct<hashtags:list<struct<text:string,indices:list<int32>>>>,\
             retweet_count:int32,text:int64,metadata:map<string,string>",
        );
        for columns in [inferred, disagreeing] {
            let mut streamed = RowBuilder::new(&columns, rules(), &HashMap::new());
            let mut tree = RowBuilder::new(&columns, rules(), &HashMap::new());
            let mut refused = 0;
            for line in &lines {
                let a = streamed.append_text(line.as_bytes()).map_err(|e| match e {
                    AppendError::Convert(err) => err,
                    other => panic!("{other:?}"),
                });
                let b = tree.append(&Json::parse(line.as_bytes()).unwrap());
                assert_eq!(a, b, "{line}");
                refused += a.is_err() as usize;
            }
            assert!(
                !streamed.is_empty() && refused > 0,
                "{} rows, {refused} refused",
                streamed.len()
            );
            assert_eq!(to_batch(&columns, &mut streamed), to_batch(&columns, &mut tree));
        }
    }
}
