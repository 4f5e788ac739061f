//! The canonical JSON of a row: what a record is rebuilt from when its
//! `_spillway_data` is null.
//!
//! A record is written without its original bytes only when they are
//! exactly the canonical JSON of its row, as written to the file: the check
//! runs on the very Arrow arrays handed to the Parquet writer, and the same
//! code rebuilds the record from the arrays a reader gets back. So a record
//! is rebuilt byte for byte, or its bytes are in `_spillway_data`; which
//! records qualify only changes the file's size. (A flat record read by
//! [`super::convert`]'s flat path is judged as it is read, by the rules
//! below; debug builds, so every test, also run this check on it and fail
//! if the two disagree.)
//!
//! The canonical JSON of a row (the user columns, reserved ones excluded):
//! - an object of the columns in the file's order, keys spelled as the
//!   column names, compact (no whitespace); a null column is left out, at
//!   every level, unless its place is among the row's *null members*, where
//!   it is written `"key":null`;
//! - strings escaped as serde_json escapes them: `\"`, `\\`, `\b`, `\f`,
//!   `\n`, `\r`, `\t`, other control characters as `\u00xx`, everything
//!   else as it is (UTF-8, `/` unescaped);
//! - `int32`/`int64` as integers; `boolean` as `true`/`false`;
//! - `double`: an integral value below 2^53 as an integer (as JavaScript
//!   and Go write them), any other as the shortest text that reads back to
//!   the same value (ryu, as serde_json writes it, e.g. `0.1`, `1e300`);
//! - lists as arrays, a null element as `null`; structs as objects.
//!
//! A row with a non-null value of another type (`float`, `decimal`, `date`,
//! `timestamp`, `map`) has no canonical JSON: its record keeps its bytes.
//!
//! **Null members.** A null column and a missing key are the same null in
//! Arrow, so a record's explicit `"key":null` members are kept beside its
//! row, as their places: every member of every object written (the
//! columns, then a struct's fields where the struct is written, list
//! elements' fields included) counts as one place, in the order the
//! canonical JSON is written, null or not, from 0. `{"a":1,"b":null}` under
//! columns `a`, `b` has a null member at place 1; `{"a":1}` has none. The
//! places are written to `_spillway_nulls` as ascending decimal numbers
//! joined by commas (`"1"`, `"0,4,7"`), and the reader writes `"key":null`
//! at exactly those places (issue #17: 93% of the benchmark's events and
//! every tweet hold a null member, and kept their bytes for it).

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, StringArray, StructArray,
};
use arrow_schema::{DataType, FieldRef};

use crate::escape::find_escape;

/// Writes the canonical JSON of rows of a set of columns.
pub struct Canonical<'a> {
    columns: Vec<Member<'a>>,
}

/// A column or struct field: `"name":` and its values.
struct Member<'a> {
    key: Vec<u8>,
    values: Values<'a>,
}

enum Values<'a> {
    String(&'a StringArray),
    Boolean(&'a BooleanArray),
    Int32(&'a Int32Array),
    Int64(&'a Int64Array),
    Double(&'a Float64Array),
    List(&'a ListArray, Box<Values<'a>>),
    Struct(&'a StructArray, Vec<Member<'a>>),
    /// A type with no canonical JSON: only its nulls can be written.
    Other(&'a dyn Array),
}

impl<'a> Canonical<'a> {
    /// The columns `fields` with their `arrays`, in the file's order.
    pub fn new(fields: &[FieldRef], arrays: &'a [ArrayRef]) -> Self {
        Self {
            columns: fields
                .iter()
                .zip(arrays)
                .map(|(field, array)| Member::new(field.name(), array.as_ref()))
                .collect(),
        }
    }

    /// Appends the canonical JSON of `row` to `out`, with `null` members at
    /// the places `nulls` (ascending); `false` (and `out` holding a part of
    /// it) if the row has none, or if a place of `nulls` is not a null
    /// member of the row.
    pub fn write(&self, row: usize, nulls: &[usize], out: &mut Vec<u8>) -> bool {
        let mut out = Out {
            bytes: out,
            place: 0,
            nulls: Nulls::Written(nulls),
        };
        write_object(&self.columns, row, &mut out) && matches!(out.nulls, Nulls::Written([]))
    }

    /// Whether `original` is exactly the canonical JSON of `row`, with null
    /// members where `original` has them: their places are then in
    /// `nulls`. `scratch` is working space. Written into `scratch` and
    /// compared with `original` every [`CHECK_BYTES`] or so, at the end of
    /// a column, so a record that differs early (most of those that differ)
    /// is not written whole. (Comparing piece by piece as it is written
    /// cost more in calls than it saved.)
    pub fn matches(&self, row: usize, original: &[u8], scratch: &mut Vec<u8>, nulls: &mut Vec<usize>) -> bool {
        scratch.clear();
        nulls.clear();
        let mut out = Out {
            bytes: scratch,
            place: 0,
            nulls: Nulls::Found {
                original,
                places: nulls,
            },
        };
        out.bytes.push(b'{');
        let mut checked = 0;
        let mut first = true;
        for column in &self.columns {
            if !out.member(column, row, &mut first) {
                return false;
            }
            if out.bytes.len() - checked >= CHECK_BYTES {
                if original.get(checked..out.bytes.len()) != Some(&out.bytes[checked..]) {
                    return false;
                }
                checked = out.bytes.len();
            }
        }
        out.bytes.push(b'}');
        out.bytes.len() == original.len() && out.bytes[checked..] == original[checked..]
    }
}

/// How many bytes of canonical JSON [`Canonical::matches`] writes before it
/// compares them with the record.
const CHECK_BYTES: usize = 128;

/// Where canonical JSON goes, and which null members it holds.
struct Out<'o, 'n> {
    bytes: &'o mut Vec<u8>,
    /// The place of the next member (see the module's documentation).
    place: usize,
    nulls: Nulls<'n>,
}

enum Nulls<'n> {
    /// Rebuilding: the places still to come of the null members to write.
    Written(&'n [usize]),
    /// Matching `original` (of which `bytes` is meant to be the start):
    /// a null member is written where `original` has it next, and its
    /// place recorded.
    Found {
        original: &'n [u8],
        places: &'n mut Vec<usize>,
    },
}

/// Where canonical JSON goes, piece by piece.
trait Put {
    /// Appends `bytes`; `false` stops the writing.
    fn put(&mut self, bytes: &[u8]) -> bool;
}

impl Put for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> bool {
        self.extend_from_slice(bytes);
        true
    }
}

impl Put for Out<'_, '_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> bool {
        self.bytes.put(bytes)
    }
}

impl Out<'_, '_> {
    /// Writes `member` of an object at `row`, after a comma unless it is
    /// the object's `first` written; `false` if it has no canonical JSON.
    #[inline]
    fn member(&mut self, member: &Member, row: usize, first: &mut bool) -> bool {
        let place = self.place;
        self.place += 1;
        if member.values.is_null(row) {
            if self.null_member(place, &member.key, *first) {
                *first = false;
            }
            return true;
        }
        if !*first {
            self.bytes.push(b',');
        }
        *first = false;
        self.put(&member.key) && member.values.write(row, self)
    }

    /// Writes the null member `key` at `place` if it is one of the row's;
    /// whether it did.
    fn null_member(&mut self, place: usize, key: &[u8], first: bool) -> bool {
        let comma: &[u8] = if first { b"" } else { b"," };
        let written = match &mut self.nulls {
            Nulls::Written(places) => match places.split_first() {
                Some((&next, rest)) if next == place => {
                    *places = rest;
                    true
                }
                _ => false,
            },
            Nulls::Found { original, places } => {
                let next = original.get(self.bytes.len()..).unwrap_or_default();
                let found = next.len() >= comma.len() + key.len() + 4
                    && next.starts_with(comma)
                    && next[comma.len()..].starts_with(key)
                    && next[comma.len() + key.len()..].starts_with(b"null");
                if found {
                    places.push(place);
                }
                found
            }
        };
        if written {
            self.bytes.extend_from_slice(comma);
            self.bytes.extend_from_slice(key);
            self.bytes.extend_from_slice(b"null");
        }
        written
    }
}

impl<'a> Member<'a> {
    fn new(name: &str, array: &'a dyn Array) -> Self {
        let mut key = Vec::with_capacity(name.len() + 3);
        write_string(name, &mut key);
        key.push(b':');
        Self {
            key,
            values: Values::new(array),
        }
    }
}

impl<'a> Values<'a> {
    fn new(array: &'a dyn Array) -> Self {
        match array.data_type() {
            DataType::Utf8 => Values::String(array.as_string::<i32>()),
            DataType::Boolean => Values::Boolean(array.as_boolean()),
            DataType::Int32 => Values::Int32(array.as_primitive::<Int32Type>()),
            DataType::Int64 => Values::Int64(array.as_primitive::<Int64Type>()),
            DataType::Float64 => Values::Double(array.as_primitive::<Float64Type>()),
            DataType::List(_) => {
                let list = array.as_list::<i32>();
                Values::List(list, Box::new(Values::new(list.values().as_ref())))
            }
            DataType::Struct(fields) => {
                let structs = array.as_struct();
                let members = fields
                    .iter()
                    .zip(structs.columns())
                    .map(|(field, child)| Member::new(field.name(), child.as_ref()))
                    .collect();
                Values::Struct(structs, members)
            }
            _ => Values::Other(array),
        }
    }

    fn is_null(&self, row: usize) -> bool {
        match self {
            Values::String(a) => a.is_null(row),
            Values::Boolean(a) => a.is_null(row),
            Values::Int32(a) => a.is_null(row),
            Values::Int64(a) => a.is_null(row),
            Values::Double(a) => a.is_null(row),
            Values::List(a, _) => a.is_null(row),
            Values::Struct(a, _) => a.is_null(row),
            Values::Other(a) => a.is_null(row),
        }
    }

    /// Writes the non-null value at `row`; `false` if it has no canonical
    /// JSON (or `out` stopped).
    fn write(&self, row: usize, out: &mut Out) -> bool {
        match self {
            Values::String(a) => write_string(a.value(row), out),
            Values::Boolean(a) => out.put(if a.value(row) { b"true" } else { b"false" }),
            Values::Int32(a) => out.put(itoa::Buffer::new().format(a.value(row)).as_bytes()),
            Values::Int64(a) => out.put(itoa::Buffer::new().format(a.value(row)).as_bytes()),
            Values::Double(a) => write_double(a.value(row), out),
            Values::List(list, items) => {
                let offsets = list.value_offsets();
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                if !out.put(b"[") {
                    return false;
                }
                for item in start..end {
                    if item > start && !out.put(b",") {
                        return false;
                    }
                    let written = if items.is_null(item) {
                        out.put(b"null")
                    } else {
                        items.write(item, out)
                    };
                    if !written {
                        return false;
                    }
                }
                out.put(b"]")
            }
            Values::Struct(_, members) => write_object(members, row, out),
            Values::Other(_) => false,
        }
    }
}

fn write_object(members: &[Member], row: usize, out: &mut Out) -> bool {
    out.put(b"{");
    let mut first = true;
    for member in members {
        if !out.member(member, row, &mut first) {
            return false;
        }
    }
    out.put(b"}")
}

/// 2^53: integral doubles below it are written as integers.
pub(super) const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

fn write_double(value: f64, out: &mut impl Put) -> bool {
    if !value.is_finite() {
        return false;
    }
    if value.fract() == 0.0 && value.abs() < EXACT_INTEGERS {
        // `-0.0` as well: the integer 0.
        out.put(itoa::Buffer::new().format(value as i64).as_bytes())
    } else {
        out.put(ryu::Buffer::new().format_finite(value).as_bytes())
    }
}

/// A JSON string, escaped as serde_json escapes it.
fn write_string(value: &str, out: &mut impl Put) -> bool {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rest = value.as_bytes();
    if !out.put(b"\"") {
        return false;
    }
    while let Some(at) = find_escape(rest) {
        let byte = rest[at];
        let unicode;
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => {
                unicode = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(byte >> 4) as usize],
                    HEX[(byte & 0xf) as usize],
                ];
                &unicode
            }
        };
        if !(out.put(&rest[..at]) && out.put(escape)) {
            return false;
        }
        rest = &rest[at + 1..];
    }
    out.put(rest) && out.put(b"\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(value: &str) -> String {
        let mut out = Vec::new();
        write_string(value, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for value in [
            "plain",
            "quote \" and \\ slash /",
            "\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}",
            "é ☃ 😀 \u{2028}",
            "",
            "a longer string with \"quotes\" in two words, and a tab\there: \\o/",
        ] {
            assert_eq!(string(value), serde_json::to_string(value).unwrap(), "{value:?}");
        }
    }

    #[test]
    fn doubles_are_integers_below_2_pow_53_else_shortest() {
        let text = |v: f64| {
            let mut out = Vec::new();
            assert!(write_double(v, &mut out));
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(3.0), "3");
        assert_eq!(text(-0.0), "0");
        assert_eq!(text(-17.0), "-17");
        assert_eq!(text(4.5), "4.5");
        assert_eq!(text(0.1), "0.1");
        assert_eq!(text(9_007_199_254_740_991.0), "9007199254740991");
        assert_eq!(text(9_007_199_254_740_992.0), "9007199254740992.0");
        assert_eq!(text(1e300), "1e300");
        assert!(!write_double(f64::NAN, &mut Vec::new()));
    }
}
