//! JSON text straight into the column builders, as it is parsed: no tree
//! is built for a record (a tree is made only for a value that becomes a
//! string column's JSON text, or for an error message).
//!
//! The rules are [`ColumnBuilder::append`]'s, value by value: scalars go
//! through it unchanged; arrays, objects and maps are walked here when the
//! column is a list, struct or map. Two differences from converting a
//! parsed tree, both only for malformed input:
//! - a key that repeats in one object: its last value is kept, but every
//!   value is converted, so an earlier one that does not fit refuses the
//!   record;
//! - a record that is not valid JSON is refused as such even when a value
//!   before the syntax error did not fit (the text is checked again when a
//!   value is refused).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{smallvec_free::Slots, Children, ColumnBuilder, ConvertError, KeyRules, Kind, RowBuilder};
use crate::format::parquet::json::{Json, JsonVisitor, Key};
use crate::strict::{nests_deeper_than, StrictAny, MAX_DEPTH};

/// Why a record was not appended.
#[derive(Debug)]
pub enum AppendError {
    /// A value does not fit its column, or the record is not an object.
    Convert(ConvertError),
    /// The text is not one JSON text (or not UTF-8).
    Malformed(sonic_rs::Error),
    /// The text is not UTF-8.
    NotUtf8(simdutf8::compat::Utf8Error),
    /// The text nests deeper than [`MAX_DEPTH`]: not parsed at all.
    TooDeep,
}

/// Where a conversion error waits while the parser unwinds: serde errors
/// carry text only, this keeps the code and message.
pub type Failure = Option<ConvertError>;

fn fail<E: de::Error>(failure: &mut Failure, err: ConvertError) -> E {
    *failure = Some(err);
    E::custom("the value does not fit its column")
}

impl RowBuilder {
    /// Parses one record and appends it, or leaves the columns as they were
    /// and says why not.
    pub fn append_text(&mut self, text: &[u8]) -> Result<(), AppendError> {
        let text = simdutf8::compat::from_utf8(text).map_err(AppendError::NotUtf8)?;
        // Before the parser, which recurses once per level.
        if nests_deeper_than(text.as_bytes(), MAX_DEPTH) {
            return Err(AppendError::TooDeep);
        }
        let mut failure = None;
        let mut deserializer = sonic_rs::Deserializer::from_str(text);
        let parsed = deserializer
            .deserialize_any(RowVisitor {
                children: &mut self.children,
                rules: &self.rules,
                failure: &mut failure,
            })
            .and_then(|()| deserializer.end());
        match (parsed, failure) {
            (Ok(()), _) => {
                self.len += 1;
                Ok(())
            }
            (Err(err), None) => {
                self.children.truncate(self.len);
                Err(AppendError::Malformed(err))
            }
            (Err(_), Some(refused)) => {
                self.children.truncate(self.len);
                match sonic_rs::from_str::<StrictAny>(text) {
                    Ok(_) => Err(AppendError::Convert(refused)),
                    Err(err) => Err(AppendError::Malformed(err)),
                }
            }
        }
    }
}

/// A whole record: an object whose entries feed the top-level columns.
struct RowVisitor<'c, 'r, 'f> {
    children: &'c mut Children,
    rules: &'r KeyRules,
    failure: &'f mut Failure,
}

impl RowVisitor<'_, '_, '_> {
    fn not_an_object<E: de::Error>(self, record: Json) -> E {
        fail(
            self.failure,
            ConvertError {
                code: "Parquet.NotAnObject",
                message: format!("record is {}, not a JSON object: {}", record.kind(), record.preview()),
            },
        )
    }
}

impl<'de> Visitor<'de> for RowVisitor<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.children.stream_object(&mut map, self.rules, self.failure)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let record = JsonVisitor.visit_seq(seq)?;
        Err(self.not_an_object(record))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.not_an_object(Json::Null))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        Err(self.not_an_object(Json::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        Err(self.not_an_object(Json::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        Err(self.not_an_object(JsonVisitor.visit_u64(v)?))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        Err(self.not_an_object(Json::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        Err(self.not_an_object(Json::Str(Cow::Borrowed(v))))
    }
}

impl Children {
    /// Appends one object's entries as they are parsed, a null for each
    /// missing column.
    fn stream_object<'de, A: MapAccess<'de>>(
        &mut self,
        map: &mut A,
        rules: &KeyRules,
        failure: &mut Failure,
    ) -> Result<(), A::Error> {
        // Every child holds one value per row so far.
        let rows = self.builders.first().map_or(0, ColumnBuilder::len);
        let mut seen = Slots::new(self.builders.len());
        let mut position = 0;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match self.find(position, &key, rules) {
                Some(index) => {
                    if seen.get(index) != usize::MAX {
                        // A repeated key: its last value wins.
                        self.builders[index].truncate(rows);
                    }
                    seen.set(index, position);
                    map.next_value_seed(ValueSeed {
                        builder: &mut self.builders[index],
                        rules,
                        failure,
                    })?;
                }
                None => {
                    map.next_value::<StrictAny>()?;
                }
            }
            position += 1;
        }
        for (index, builder) in self.builders.iter_mut().enumerate() {
            if seen.get(index) == usize::MAX {
                builder.append_null();
            }
        }
        Ok(())
    }
}

/// One value into one column.
struct ValueSeed<'b, 'r, 'f> {
    builder: &'b mut ColumnBuilder,
    rules: &'r KeyRules,
    failure: &'f mut Failure,
}

impl ValueSeed<'_, '_, '_> {
    /// A scalar, or a value that is not walked (an object for a string
    /// column): the tree rules.
    fn append<E: de::Error>(self, value: &Json) -> Result<(), E> {
        self.builder
            .append(value, self.rules)
            .map_err(|err| fail(self.failure, err))
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.builder.append_null();
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.append(&Json::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.append(&Json::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        let value = JsonVisitor.visit_u64(v)?;
        self.append(&value)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.append(&Json::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.append(&Json::Str(Cow::Borrowed(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ValueSeed {
            builder,
            rules,
            failure,
        } = self;
        if let Kind::List {
            offsets,
            validity,
            item,
            ..
        } = &mut builder.kind
        {
            while seq
                .next_element_seed(ValueSeed {
                    builder: item,
                    rules,
                    failure,
                })?
                .is_some()
            {}
            offsets.push(item.len() as i32);
            validity.push(true);
            return Ok(());
        }
        let value = JsonVisitor.visit_seq(seq)?;
        ValueSeed {
            builder,
            rules,
            failure,
        }
        .append(&value)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ValueSeed {
            builder,
            rules,
            failure,
        } = self;
        match &mut builder.kind {
            Kind::Struct {
                children,
                validity,
                len,
            } => {
                children.stream_object(&mut map, rules, failure)?;
                validity.push(true);
                *len += 1;
                return Ok(());
            }
            Kind::Map {
                offsets,
                validity,
                keys,
                values,
                ..
            } => {
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    keys.push(&key);
                    map.next_value_seed(ValueSeed {
                        builder: values,
                        rules,
                        failure,
                    })?;
                }
                offsets.push(keys.len() as i32);
                validity.push(true);
                return Ok(());
            }
            _ => {}
        }
        let value = JsonVisitor.visit_map(map)?;
        ValueSeed {
            builder,
            rules,
            failure,
        }
        .append(&value)
    }
}
