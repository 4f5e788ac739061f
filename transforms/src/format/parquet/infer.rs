//! Inferring a schema from the records of one buffer.
//!
//! Merge rules, value by value:
//! - a key seen in some records only is a nullable column (every column is);
//! - `null` takes the type of the other values; a column that is only ever
//!   `null` is a string column;
//! - integers and floats merge to double;
//! - booleans, numbers and strings that disagree merge to string (every
//!   scalar converts to its JSON text);
//! - objects merge field by field (the union of their keys; a key goes
//!   where it was first seen: right after the key before it there, or, if
//!   it came first, right before the key after it, else at the end, see
//!   [`Fields::order`]); arrays merge their elements' types;
//! - an object, an array and a scalar cannot merge: the shape seen first in
//!   the buffer wins, and a record whose value has another shape goes to the
//!   error output (a string column still takes an object or array as its
//!   JSON text, as with a given schema);
//! - Parquet cannot store a struct without fields: an object that is always
//!   empty (`{}`) is a string column holding `{}`; an array that is always
//!   empty is a `list<string>`;
//! - integers beyond int64 make the column a double.
//!
//! Keys are matched with the same rules as conversion (case, dots); a
//! column takes the spelling of its first key. Top-level keys starting with
//! `_spillway_` are not inferred: those names are reserved (the values are
//! still in `_spillway_data`).

use std::borrow::Cow;
use std::collections::HashMap;

use super::convert::{KeyHints, KeyRules};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::json::Json;
use super::json::Key;
use super::schema::{Column, ColumnType, RESERVED_PREFIX};
use crate::strict::{nests_deeper_than, StrictAny, MAX_DEPTH};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Shape {
    Null,
    Bool,
    Int,
    Float,
    Str,
    List(Box<Shape>),
    Struct(Fields),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Fields {
    /// In the order their keys were first seen (a column's index is its
    /// handle); [`to_columns`] gives them in the order of [`Self::after`].
    pub(super) columns: Vec<(String, Shape)>,
    by_key: HashMap<String, usize>,
    hints: KeyHints,
    /// Per column, where it goes, from the object where its key was first
    /// seen.
    anchors: Vec<Anchor>,
}

/// Where a column goes among the columns first seen before it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Anchor {
    /// Right after the column of the key before it.
    After(usize),
    /// Its key came first: right before the column of the key after it,
    /// if that one was first seen before it (else at the end, and that
    /// one right after it).
    Before(usize),
    /// At the end.
    End,
}

/// The keys of one object so far, for [`Anchor`]s.
#[derive(Debug, Default)]
pub(super) struct Cursor {
    previous: Option<usize>,
    /// A new column whose key came first, waiting for the key after it.
    first: Option<usize>,
}

impl Fields {
    fn merge_fields(&mut self, other: Fields, room: &Room) {
        let mut by_index: Vec<(String, usize)> = other.by_key.into_iter().collect();
        by_index.sort_by_key(|(_, index)| *index);
        let mut columns: Vec<Option<(String, Shape)>> = other.columns.into_iter().map(Some).collect();
        // Other's columns as they are here.
        let mut mine: Vec<Option<usize>> = vec![None; columns.len()];
        let first_new = self.columns.len();
        for (key, index) in by_index {
            let (name, shape) = columns[index].take().expect("each column has one key");
            match self.by_key.get(&key) {
                Some(&here) => {
                    merge_shape(&mut self.columns[here].1, shape, room);
                    mine[index] = Some(here);
                }
                None if !room.take_one() => {}
                None => {
                    self.columns.push((name, shape));
                    self.anchors.push(other.anchors[index]);
                    self.by_key.insert(key, self.columns.len() - 1);
                    mine[index] = Some(self.columns.len() - 1);
                }
            }
        }
        // The new columns' anchors, as columns here (`End` where there was
        // no room for the anchor's column).
        for (index, here) in mine.iter().enumerate() {
            if let Some(here) = *here {
                if here >= first_new {
                    let anchor = match other.anchors[index] {
                        Anchor::After(column) => mine[column].map_or(Anchor::End, Anchor::After),
                        Anchor::Before(column) => mine[column].map_or(Anchor::End, Anchor::Before),
                        Anchor::End => Anchor::End,
                    };
                    self.anchors[here] = anchor;
                }
            }
        }
    }

    /// The columns' indexes in the order they are written: in the order
    /// first seen, each put where its [`Anchor`] says, so a producer's key
    /// order is kept when a key is missing from the first records
    /// (`{"a":1,"c":3}` then `{"a":1,"b":2,"c":3}` make `a, b, c`, not
    /// `a, c, b`). A function of the keys first seen and of their
    /// neighbours there, so a batch inferred in parts and merged orders
    /// its columns as it does whole.
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = Vec::with_capacity(self.columns.len());
        let at = |order: &[usize], column: usize| {
            order
                .iter()
                .position(|&o| o == column)
                .expect("an anchor's column was first seen earlier")
        };
        for (index, anchor) in self.anchors.iter().enumerate() {
            let place = match *anchor {
                Anchor::After(before) => at(&order, before) + 1,
                Anchor::Before(after) if after < index => at(&order, after),
                // The key after it was new there too (and goes after it).
                Anchor::Before(_) | Anchor::End => order.len(),
            };
            order.insert(place, index);
        }
        order
    }

    /// Notes that the key of column `index` came next in the object of
    /// `cursor` (`new`: its column was just made).
    pub(super) fn next_key(&mut self, cursor: &mut Cursor, index: usize, new: bool) {
        if let Some(first) = cursor.first.take() {
            if index != first {
                self.anchors[first] = Anchor::Before(index);
            }
        }
        if new && cursor.previous.is_none() {
            cursor.first = Some(index);
        }
        cursor.previous = Some(index);
    }

    /// The column of the key at `position` in its object (whose keys so
    /// far `cursor` holds), added if new;
    /// `None` for a reserved top-level key, and for a new key once `room`
    /// is used up.
    pub(super) fn index_of(
        &mut self,
        position: usize,
        key: &str,
        rules: &KeyRules,
        top: bool,
        room: &Room,
        cursor: &mut Cursor,
    ) -> Option<usize> {
        // A reserved key is never hinted.
        if let Some(index) = self.hints.get(position, key) {
            self.next_key(cursor, index, false);
            return Some(index);
        }
        if top && is_reserved(key) {
            return None;
        }
        let normalized = rules.normalize(key);
        let mut new = false;
        let index = match self.by_key.get(normalized.as_ref()).copied() {
            Some(index) => index,
            None if !room.take_one() => return None,
            None => {
                let name = if rules.dots_to_underscores {
                    key.replace('.', "_")
                } else {
                    key.to_owned()
                };
                self.columns.push((name, Shape::Null));
                self.anchors.push(cursor.previous.map_or(Anchor::End, Anchor::After));
                self.by_key.insert(normalized.into_owned(), self.columns.len() - 1);
                new = true;
                self.columns.len() - 1
            }
        };
        self.next_key(cursor, index, new);
        self.hints.set(position, key, index);
        Some(index)
    }

    pub(super) fn merge_object(&mut self, entries: &[(Cow<str>, Json)], rules: &KeyRules, top: bool, room: &Room) {
        let mut cursor = Cursor::default();
        for (position, (key, value)) in entries.iter().enumerate() {
            if let Some(index) = self.index_of(position, key, rules, top, room, &mut cursor) {
                merge_value(&mut self.columns[index].1, value, rules, room);
            }
        }
    }
}

/// Merges a JSON text into a shape while parsing it: no tree is built.
pub(super) struct ShapeSeed<'s, 'r> {
    pub(super) shape: &'s mut Shape,
    pub(super) rules: &'r KeyRules,
    pub(super) room: &'r Room,
}

impl<'de> DeserializeSeed<'de> for ShapeSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ShapeSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        merge_scalar(self.shape, Shape::Bool);
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        merge_scalar(self.shape, Shape::Int);
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        merge_scalar(self.shape, if v <= i64::MAX as u64 { Shape::Int } else { Shape::Float });
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        merge_scalar(self.shape, Shape::Float);
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        merge_scalar(self.shape, Shape::Str);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if *self.shape == Shape::Null {
            *self.shape = Shape::List(Box::new(Shape::Null));
        }
        match self.shape {
            Shape::List(item) => {
                while seq
                    .next_element_seed(ShapeSeed {
                        shape: item,
                        rules: self.rules,
                        room: self.room,
                    })?
                    .is_some()
                {}
            }
            // Another shape came first: it wins.
            _ => while seq.next_element::<StrictAny>()?.is_some() {},
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if *self.shape == Shape::Null {
            *self.shape = Shape::Struct(Fields::default());
        }
        match self.shape {
            Shape::Struct(fields) => merge_map(fields, &mut map, self.rules, false, self.room),
            _ => {
                while map.next_entry::<StrictAny, StrictAny>()?.is_some() {}
                Ok(())
            }
        }
    }
}

fn merge_map<'de, A: MapAccess<'de>>(
    fields: &mut Fields,
    map: &mut A,
    rules: &KeyRules,
    top: bool,
    room: &Room,
) -> Result<(), A::Error> {
    let mut position = 0;
    let mut cursor = Cursor::default();
    while let Some(key) = map.next_key::<Key<'de>>()? {
        match fields.index_of(position, &key.0, rules, top, room, &mut cursor) {
            Some(index) => map.next_value_seed(ShapeSeed {
                shape: &mut fields.columns[index].1,
                rules,
                room,
            })?,
            None => {
                map.next_value::<StrictAny>()?;
            }
        }
        position += 1;
    }
    Ok(())
}

/// The top level: an object's keys merge into the columns; anything else
/// is skipped (and refused at conversion).
struct TopSeed<'s, 'r> {
    fields: &'s mut Fields,
    rules: &'r KeyRules,
    room: &'r Room,
}

impl<'de> Visitor<'de> for TopSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        merge_map(self.fields, &mut map, self.rules, true, self.room)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<StrictAny>()?.is_some() {}
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
}

/// A scalar value's shape merged into `shape`.
pub(super) fn merge_scalar(shape: &mut Shape, scalar: Shape) {
    match shape {
        Shape::Null => *shape = scalar,
        Shape::List(_) | Shape::Struct(_) | Shape::Str => {}
        current if *current == scalar => {}
        Shape::Int | Shape::Float if matches!(scalar, Shape::Int | Shape::Float) => *shape = Shape::Float,
        _ => *shape = Shape::Str,
    }
}

fn is_reserved(key: &str) -> bool {
    key.len() >= RESERVED_PREFIX.len()
        && key.as_bytes()[..RESERVED_PREFIX.len()].eq_ignore_ascii_case(RESERVED_PREFIX.as_bytes())
}

fn shape_of_scalar(value: &Json) -> Shape {
    match value {
        Json::Null => Shape::Null,
        Json::Bool(_) => Shape::Bool,
        Json::Int(_) => Shape::Int,
        Json::UInt(_) | Json::Float(_) => Shape::Float,
        Json::Str(_) => Shape::Str,
        Json::Array(_) | Json::Object(_) => unreachable!("not a scalar"),
    }
}

/// A parsed value's shape merged into `shape`: the rules of [`ShapeSeed`],
/// on a tree.
pub(super) fn merge_value(shape: &mut Shape, value: &Json, rules: &KeyRules, room: &Room) {
    match (&mut *shape, value) {
        (_, Json::Null) => {}
        (Shape::Null, Json::Array(items)) => {
            let mut item = Shape::Null;
            for v in items {
                merge_value(&mut item, v, rules, room);
            }
            *shape = Shape::List(Box::new(item));
        }
        (Shape::Null, Json::Object(entries)) => {
            let mut fields = Fields::default();
            fields.merge_object(entries, rules, false, room);
            *shape = Shape::Struct(fields);
        }
        (Shape::List(item), Json::Array(items)) => {
            for v in items {
                merge_value(item, v, rules, room);
            }
        }
        (Shape::Struct(fields), Json::Object(entries)) => fields.merge_object(entries, rules, false, room),
        // Nested against anything else: the first shape wins.
        (Shape::List(_) | Shape::Struct(_) | Shape::Str, _) | (_, Json::Array(_) | Json::Object(_)) => {}
        (Shape::Null, scalar) => *shape = shape_of_scalar(scalar),
        (current, scalar) => {
            let merged = match (current.clone(), shape_of_scalar(scalar)) {
                (a, b) if a == b => a,
                (Shape::Int, Shape::Float) | (Shape::Float, Shape::Int) => Shape::Float,
                _ => Shape::Str,
            };
            *shape = merged;
        }
    }
}

/// Merges what another part of the batch inferred into `shape`, with the
/// same rules as for values (`shape` came first in the batch).
fn merge_shape(shape: &mut Shape, other: Shape, room: &Room) {
    match (&mut *shape, other) {
        (_, Shape::Null) => {}
        (Shape::Null, other) => *shape = other,
        (Shape::List(item), Shape::List(other)) => merge_shape(item, *other, room),
        (Shape::Struct(fields), Shape::Struct(other)) => fields.merge_fields(other, room),
        (Shape::List(_) | Shape::Struct(_) | Shape::Str, _) | (_, Shape::List(_) | Shape::Struct(_)) => {}
        (current, other) => {
            let merged = match (current.clone(), other) {
                (a, b) if a == b => a,
                (Shape::Int, Shape::Float) | (Shape::Float, Shape::Int) => Shape::Float,
                _ => Shape::Str,
            };
            *shape = merged;
        }
    }
}

fn to_type(shape: &Shape) -> ColumnType {
    match shape {
        Shape::Null | Shape::Str => ColumnType::String,
        Shape::Bool => ColumnType::Boolean,
        Shape::Int => ColumnType::Int64,
        Shape::Float => ColumnType::Double,
        Shape::List(item) => ColumnType::List(Box::new(to_type(item))),
        Shape::Struct(fields) if fields.columns.is_empty() => ColumnType::String,
        Shape::Struct(fields) => ColumnType::Struct(to_columns(fields)),
    }
}

fn to_columns(fields: &Fields) -> Vec<Column> {
    fields
        .order()
        .into_iter()
        .map(|index| {
            let (name, shape) = &fields.columns[index];
            Column {
                name: name.clone(),
                ty: to_type(shape),
            }
        })
        .collect()
}

/// How many columns one inference may make, counting the fields of
/// structs at every level. Keys past it are not made columns: their values
/// stay in the record's `_spillway_data`, from which it is rebuilt. Without
/// a bound, records whose keys are ids (`{"user_81723": ...}`) made one
/// column per key: a 6 MB file of such records took 21 GiB and six minutes
/// and wrote nothing.
pub const MAX_COLUMNS: usize = 2_000;

/// The columns an inference may still make (see [`MAX_COLUMNS`]). A cell,
/// so that the parse, which holds the inference's fields mutably, can
/// count in it too.
#[derive(Debug)]
pub(super) struct Room(std::cell::Cell<usize>);

impl Room {
    pub(super) fn new(columns: usize) -> Self {
        Self(std::cell::Cell::new(columns))
    }

    /// Takes room for one new column, if there is any left.
    pub(super) fn take_one(&self) -> bool {
        let left = self.0.get();
        self.0.set(left.saturating_sub(1));
        left > 0
    }
}

/// Accumulates the schema of a buffer's records.
#[derive(Debug)]
pub struct Inference {
    pub(super) top: Fields,
    pub(super) room: Room,
}

impl Default for Inference {
    fn default() -> Self {
        Self {
            top: Fields::default(),
            room: Room::new(MAX_COLUMNS),
        }
    }
}

impl Inference {
    /// Merges one record (a JSON object; other records are skipped here and
    /// refused at conversion).
    #[cfg(test)]
    pub fn add(&mut self, record: &Json, rules: &KeyRules) {
        if let Json::Object(entries) = record {
            self.top.merge_object(entries, rules, true, &self.room);
        }
    }

    /// Merges one record's JSON text as it is parsed, without building a
    /// tree. A record that is not valid JSON may have merged its first
    /// values (at worst a column that stays null); it is refused at
    /// conversion. A record nested deeper than [`MAX_DEPTH`] is not
    /// parsed at all (nor converted).
    pub fn add_text(&mut self, text: &[u8], rules: &KeyRules) {
        if nests_deeper_than(text, MAX_DEPTH) {
            return;
        }
        let mut deserializer = sonic_rs::Deserializer::from_slice(text);
        let _ = deserializer.deserialize_any(TopSeed {
            fields: &mut self.top,
            rules,
            room: &self.room,
        });
    }

    /// Merges the inference of a later part of the batch.
    pub fn merge(&mut self, later: Inference) {
        self.top.merge_fields(later.top, &self.room);
    }

    pub fn columns(&self) -> Vec<Column> {
        to_columns(&self.top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(lines: &[&str]) -> String {
        let rules = KeyRules::default();
        let mut inference = Inference::default();
        for line in lines {
            inference.add(&Json::parse(line.as_bytes()).unwrap(), &rules);
        }
        let mut streaming = Inference::default();
        for line in lines {
            streaming.add_text(line.as_bytes(), &rules);
        }
        let tree = ColumnType::Struct(inference.columns()).to_string();
        assert_eq!(
            ColumnType::Struct(streaming.columns()).to_string(),
            tree,
            "streaming = tree"
        );
        tree
    }

    #[test]
    fn merges_compatible_records() {
        assert_eq!(
            infer(&[
                r#"{"a":1,"b":null,"c":[],"d":{},"e":{"x":1}}"#,
                r#"{"a":2.5,"f":true,"E":{"y":[1,2.5]},"_spillway_x":1}"#,
                r#"{"a":3,"f":"yes","c":[{"k":"v"}]}"#,
            ]),
            // `f` right after `a`, the key before it where it was first seen.
            "struct<a:double,f:string,b:string,c:list<struct<k:string>>,d:string,e:struct<x:int64,y:list<double>>>"
        );
    }

    #[test]
    fn merging_parts_equals_inferring_the_whole() {
        let rules = KeyRules {
            case_insensitive: true,
            dots_to_underscores: false,
        };
        let lines = [
            r#"{"a":1,"o":{"x":null},"l":[]}"#,
            r#"{"b":"s","o":{"y":[1]},"A":2.5}"#,
            r#"{"l":[{"k":1}],"o":{"x":true},"c":{}}"#,
            r#"{"b":3,"o":"flat","d":null}"#,
        ];
        let whole = infer(&lines);
        for split in 1..lines.len() {
            let mut first = Inference::default();
            let mut second = Inference::default();
            for (i, line) in lines.iter().enumerate() {
                let part = if i < split { &mut first } else { &mut second };
                part.add(&Json::parse(line.as_bytes()).unwrap(), &rules);
            }
            first.merge(second);
            assert_eq!(
                ColumnType::Struct(first.columns()).to_string(),
                whole,
                "split at {split}"
            );
        }
    }

    #[test]
    fn a_new_key_goes_where_it_was_first_seen() {
        // After the key before it.
        assert_eq!(
            infer(&[r#"{"a":1,"c":3}"#, r#"{"a":1,"b":2,"c":3}"#]),
            "struct<a:int64,b:int64,c:int64>"
        );
        // First in its object: before the key after it.
        assert_eq!(
            infer(&[r#"{"e":{"d":"x"}}"#, r#"{"e":{"u":"y","d":"x"}}"#]),
            "struct<e:struct<u:string,d:string>>"
        );
        // Alone, or before a key as new as it: at the end.
        assert_eq!(infer(&[r#"{"x":1}"#, r#"{"y":2}"#]), "struct<x:int64,y:int64>");
        assert_eq!(
            infer(&[r#"{"p":1}"#, r#"{"q":1,"r":2,"p":3}"#]),
            "struct<p:int64,q:int64,r:int64>"
        );
        // A reserved key between two is passed over.
        assert_eq!(
            infer(&[r#"{"a":1,"c":3}"#, r#"{"a":1,"_spillway_x":0,"b":2,"c":3}"#]),
            "struct<a:int64,b:int64,c:int64>"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// However a batch is cut into parts, the parts merged give the
        /// columns, and their order, that the whole gives.
        #[test]
        fn parts_merged_order_their_columns_as_the_whole(
            records in proptest::collection::vec(
                (proptest::sample::subsequence(vec!["a", "b", "c", "d", "e"], 0..=5),
                 proptest::sample::subsequence(vec!["x", "y", "z"], 0..=3),
                 proptest::prelude::any::<proptest::sample::Index>(),
                 proptest::prelude::any::<u64>()),
                1..12),
            split in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            use proptest::prelude::*;
            // Each record: some top-level keys and some keys of `o`, in an
            // order of their own (a shuffle by the seed).
            let shuffle = |keys: &mut Vec<&str>, seed: u64| {
                for i in (1..keys.len()).rev() {
                    let j = (seed.rotate_left(i as u32 * 7) % (i as u64 + 1)) as usize;
                    keys.swap(i, j);
                }
            };
            let lines: Vec<String> = records
                .iter()
                .map(|(top, inner, at, seed)| {
                    let (mut top, mut inner) = (top.clone(), inner.clone());
                    shuffle(&mut top, *seed);
                    shuffle(&mut inner, seed.rotate_left(17));
                    let mut members: Vec<String> = top.iter().map(|k| format!("\"{k}\":1")).collect();
                    let object: Vec<String> = inner.iter().map(|k| format!("\"{k}\":true")).collect();
                    members.insert(at.index(members.len() + 1), format!("\"o\":{{{}}}", object.join(",")));
                    format!("{{{}}}", members.join(","))
                })
                .collect();
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            let whole = infer(&lines);
            let split = split.index(lines.len() + 1);
            let rules = KeyRules::default();
            let mut first = Inference::default();
            let mut second = Inference::default();
            for (i, line) in lines.iter().enumerate() {
                let part = if i < split { &mut first } else { &mut second };
                part.add_text(line.as_bytes(), &rules);
            }
            first.merge(second);
            prop_assert_eq!(ColumnType::Struct(first.columns()).to_string(), whole, "split at {}", split);
        }
    }

    #[test]
    fn the_first_nested_shape_wins() {
        assert_eq!(
            infer(&[r#"{"a":{"x":1}}"#, r#"{"a":"s"}"#]),
            "struct<a:struct<x:int64>>"
        );
        assert_eq!(infer(&[r#"{"a":"s"}"#, r#"{"a":{"x":1}}"#]), "struct<a:string>");
        assert_eq!(infer(&[r#"{"a":[1]}"#, r#"{"a":{"x":1}}"#]), "struct<a:list<int64>>");
        assert_eq!(infer(&[r#"{"a":[]}"#]), "struct<a:list<string>>");
        assert_eq!(infer(&[r#"{"a":18446744073709551615}"#]), "struct<a:double>");
    }
}
