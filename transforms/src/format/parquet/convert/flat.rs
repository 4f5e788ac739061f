//! The flat path: a record that is a compact object of scalars, its keys
//! spelt as its columns' and in their order, is read straight from its
//! bytes into the column builders, without a JSON parser, and whether it
//! is exactly the canonical JSON of its row ([`crate::format::parquet::canonical`])
//! is known as it is read.
//!
//! Records of flat streams (clickstreams, logs, product listings) that a
//! producer writes with a JSON library mostly look like that, and most of
//! them are their row's canonical JSON. Anything else, or anything unsure,
//! is left to the parser ([`super::stream`]) with the builders and the
//! inference untouched: whitespace, a key the columns do not spell exactly
//! or out of their order, a repeated key, a value of another JSON type than
//! its column's (`"12"` for an int64, which the OpenX rules convert), an
//! integer beyond int64, `-0`, a lone surrogate, invalid JSON. So for the
//! records it takes, the flat path gives exactly the values, inference and
//! errors (none) that the parser gives: a record's bytes decide only which
//! path reads them.
//!
//! It is used when every top-level column is a `string`, `boolean`,
//! `int32`, `int64` or `double`, and stops for the rest of a part when most
//! records fall back (a stream the parser reads anyway).

use super::{ColumnBuilder, Kind, RowBuilder};
use crate::escape::find_escape;
use crate::format::parquet::canonical::EXACT_INTEGERS;
use crate::format::parquet::infer::{merge_scalar, Cursor, Fields, Inference, Room, Shape};
use crate::format::parquet::schema::{Column, ColumnType, RESERVED_PREFIX};

/// A top-level column as the flat path reads it.
struct FlatColumn {
    /// The JSON key that feeds it (the column's name, or its mapping).
    key: Box<str>,
    /// `"key":`, as a record that lists this column next mostly goes on.
    member: Box<[u8]>,
    /// The kinds of value already merged into the inference (merging one
    /// again changes nothing).
    merged: u8,
    /// The key is the column's name: the canonical JSON spells it so.
    key_is_name: bool,
    /// Its index in the part's inference, once known.
    inferred: Option<usize>,
}

/// A value read, as the inference sees it. (Small and `Copy`: a [`Shape`]
/// per value cost more to move than reading the value.)
#[derive(Clone, Copy, Debug, PartialEq)]
enum Seen {
    Null,
    Bool,
    Int,
    Float,
    Str,
}

impl Seen {
    fn shape(self) -> Option<Shape> {
        match self {
            Seen::Null => None,
            Seen::Bool => Some(Shape::Bool),
            Seen::Int => Some(Shape::Int),
            Seen::Float => Some(Shape::Float),
            Seen::Str => Some(Shape::Str),
        }
    }
}

/// Records read by the flat path before it judges whether to go on.
const TRIAL: usize = 256;

pub(in crate::format::parquet) struct FlatPath {
    columns: Vec<FlatColumn>,
    /// The current record's columns and what each held, in key order.
    seen: Vec<(usize, Seen)>,
    /// A string with escapes, decoded.
    unescaped: String,
    tried: usize,
    fell_back: usize,
}

impl FlatPath {
    /// The flat path for `rows`' columns; `None` if a column is not a flat
    /// scalar, its key has a character JSON escapes, or a key would not
    /// find its own column by the key rules (two columns that differ only
    /// in case, say).
    pub(in crate::format::parquet) fn new(
        columns: &[Column],
        rows: &RowBuilder,
        mappings: &std::collections::HashMap<String, String>,
    ) -> Option<Self> {
        if columns.is_empty() {
            return None;
        }
        let mut flat = Vec::with_capacity(columns.len());
        for (index, column) in columns.iter().enumerate() {
            let scalar = matches!(
                column.ty,
                ColumnType::String | ColumnType::Boolean | ColumnType::Int32 | ColumnType::Int64 | ColumnType::Double
            );
            let key = mappings.get(&column.name).unwrap_or(&column.name);
            let reserved = key.len() >= RESERVED_PREFIX.len()
                && key.as_bytes()[..RESERVED_PREFIX.len()].eq_ignore_ascii_case(RESERVED_PREFIX.as_bytes());
            // A key JSON escapes (a quote, say) is never spelt as it is in
            // a record: matching it raw could take `{"a":"b":1}` for the
            // key `a":"b`.
            let escaped = find_escape(key.as_bytes()).is_some();
            if !scalar || reserved || escaped || rows.children.lookup(key, &rows.rules) != Some(index) {
                return None;
            }
            flat.push(FlatColumn {
                key: key.as_str().into(),
                member: format!("\"{key}\":").into_bytes().into(),
                merged: 0,
                key_is_name: *key == column.name,
                inferred: None,
            });
        }
        Some(Self {
            columns: flat,
            seen: Vec::new(),
            unescaped: String::new(),
            tried: 0,
            fell_back: 0,
        })
    }

    /// Appends `bytes` if the flat path reads it: `Some(canonical)`,
    /// whether they are exactly the canonical JSON of the row. `None`:
    /// left to the parser, nothing changed. With `inference`, the record's
    /// shape is merged into it as the parser would.
    pub(in crate::format::parquet) fn append(
        &mut self,
        rows: &mut RowBuilder,
        bytes: &[u8],
        inference: Option<&mut Inference>,
    ) -> Option<bool> {
        if self.tried >= TRIAL && self.fell_back * 2 > self.tried {
            return None;
        }
        self.tried += 1;
        self.seen.clear();
        let read = simdutf8::basic::from_utf8(bytes)
            .ok()
            .and_then(|_| self.read(&mut rows.children.builders, bytes));
        let Some(canonical) = read else {
            rows.children.truncate(rows.len);
            self.fell_back += 1;
            return None;
        };
        if let Some(inference) = inference {
            self.infer(&mut inference.top, &rows.rules, &inference.room);
        }
        rows.len += 1;
        Some(canonical)
    }

    /// Merges the record just read into the inference: a new key is added
    /// as the parser adds it (in key order), a value's shape merged.
    fn infer(&mut self, fields: &mut Fields, rules: &super::KeyRules, room: &Room) {
        let mut cursor = Cursor::default();
        for (position, (column, seen)) in self.seen.drain(..).enumerate() {
            let column = &mut self.columns[column];
            let index = match column.inferred {
                Some(index) => {
                    fields.next_key(&mut cursor, index, false);
                    index
                }
                // Reserved keys take the parser's path, so `None` is a
                // column the inference has no room for: the buffer's schema
                // then lacks it, and the buffer is converted again.
                None => match fields.index_of(position, &column.key, rules, true, room, &mut cursor) {
                    Some(index) => {
                        column.inferred = Some(index);
                        index
                    }
                    None => continue,
                },
            };
            let kind = 1 << seen as u8;
            if column.merged & kind != 0 {
                continue;
            }
            column.merged |= kind;
            if let Some(shape) = seen.shape() {
                merge_scalar(&mut fields.columns[index].1, shape);
            }
        }
    }

    /// Reads one record into the builders; `None` where the parser must
    /// (the builders may then hold a part of the record). `bytes` are UTF-8.
    fn read(&mut self, builders: &mut [ColumnBuilder], bytes: &[u8]) -> Option<bool> {
        let mut canonical = true;
        let mut at = 1;
        let mut next = 0;
        if bytes.first() != Some(&b'{') {
            return None;
        }
        if bytes.get(1) == Some(&b'}') {
            at = 2;
        } else {
            loop {
                // A key, `"` and no escape, and its column: the next one,
                // or one after columns left out.
                let column = match self.columns.get(next) {
                    Some(column) if starts_with(&bytes[at..], &column.member) => {
                        at += column.member.len();
                        next
                    }
                    _ => {
                        if bytes.get(at) != Some(&b'"') {
                            return None;
                        }
                        let start = at + 1;
                        let length = find_escape(&bytes[start..])?;
                        if bytes[start + length] != b'"' {
                            return None;
                        }
                        let key = &bytes[start..start + length];
                        at = start + length + 1;
                        if bytes.get(at) != Some(&b':') {
                            return None;
                        }
                        at += 1;
                        next + self.columns[next..].iter().position(|c| c.key.as_bytes() == key)?
                    }
                };
                canonical &= self.columns[column].key_is_name;
                for skipped in &mut builders[next..column] {
                    skipped.append_null();
                }
                next = column + 1;
                let builder = &mut builders[column];
                let seen = if bytes[at..].starts_with(b"null") {
                    at += 4;
                    builder.append_null();
                    // A null is left out of the canonical JSON.
                    canonical = false;
                    Seen::Null
                } else {
                    let (seen, rebuilt) = self.value(builder, bytes, &mut at)?;
                    canonical &= rebuilt;
                    seen
                };
                self.seen.push((column, seen));
                match bytes.get(at) {
                    Some(b',') => at += 1,
                    Some(b'}') => {
                        at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        if at != bytes.len() {
            return None;
        }
        for missing in &mut builders[next..] {
            missing.append_null();
        }
        Some(canonical)
    }

    /// Reads the value at `*at` into its column: its shape for the
    /// inference, and whether it is written as the canonical JSON writes
    /// it; `None` where the parser must.
    fn value(&mut self, builder: &mut ColumnBuilder, bytes: &[u8], at: &mut usize) -> Option<(Seen, bool)> {
        match &mut builder.kind {
            Kind::String(strings) => {
                if bytes.get(*at) != Some(&b'"') {
                    return None;
                }
                let (text, canonical) = self.string(bytes, at)?;
                strings.push(text.unwrap_or(&self.unescaped));
                Some((Seen::Str, canonical))
            }
            Kind::Boolean(values) => {
                let value = if bytes[*at..].starts_with(b"true") {
                    true
                } else if bytes[*at..].starts_with(b"false") {
                    false
                } else {
                    return None;
                };
                *at += if value { 4 } else { 5 };
                values.push(value);
                Some((Seen::Bool, true))
            }
            Kind::Int32(values) => {
                let Number::Integer(n) = number(bytes, at)? else {
                    return None;
                };
                values.push(i32::try_from(n).ok()?);
                Some((Seen::Int, true))
            }
            Kind::Int64(values) => {
                let Number::Integer(n) = number(bytes, at)? else {
                    return None;
                };
                values.push(n);
                Some((Seen::Int, true))
            }
            Kind::Double(values) => match number(bytes, at)? {
                Number::Integer(n) => {
                    let value = n as f64;
                    values.push(value);
                    // Integral values below 2^53 are written as integers.
                    Some((Seen::Int, value.abs() < EXACT_INTEGERS))
                }
                Number::Float { value, text } => {
                    values.push(value);
                    let integral = value.fract() == 0.0 && value.abs() < EXACT_INTEGERS;
                    let rebuilt = !integral && ryu::Buffer::new().format_finite(value).as_bytes() == text;
                    Some((Seen::Float, rebuilt))
                }
            },
            _ => None,
        }
    }

    /// The string at `*at` (its opening quote): `Some(text)` when it has
    /// no escape, `None` when it is decoded into `self.unescaped`; and
    /// whether its escapes are those serde_json writes.
    fn string<'b>(&mut self, bytes: &'b [u8], at: &mut usize) -> Option<(Option<&'b str>, bool)> {
        let start = *at + 1;
        let length = find_escape(&bytes[start..])?;
        let end = start + length;
        if bytes[end] == b'"' {
            *at = end + 1;
            // SAFETY: `bytes` are UTF-8 and `"` is ASCII: a quote never
            // falls inside a character.
            return Some((Some(unsafe { std::str::from_utf8_unchecked(&bytes[start..end]) }), true));
        }
        self.unescaped.clear();
        let mut canonical = true;
        let mut from = start;
        let mut cursor = end;
        loop {
            // SAFETY: as above, the run ends at an ASCII byte.
            self.unescaped
                .push_str(unsafe { std::str::from_utf8_unchecked(&bytes[from..cursor]) });
            match bytes[cursor] {
                b'"' => {
                    *at = cursor + 1;
                    return Some((None, canonical));
                }
                b'\\' => {
                    let (c, length, as_written) = escape(&bytes[cursor..])?;
                    self.unescaped.push(c);
                    canonical &= as_written;
                    cursor += length;
                }
                // A raw control character: not JSON.
                _ => return None,
            }
            from = cursor;
            cursor += find_escape(&bytes[cursor..])?;
        }
    }
}

/// Whether `bytes` start with `prefix` (a short key: compared eight bytes
/// at a time, inline, rather than through a call to `memcmp`).
#[inline]
fn starts_with(bytes: &[u8], prefix: &[u8]) -> bool {
    if bytes.len() < prefix.len() {
        return false;
    }
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let mut chunks = prefix.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        if word(chunk) != word(&bytes[at..at + 8]) {
            return false;
        }
        at += 8;
    }
    chunks.remainder().iter().zip(&bytes[at..]).all(|(a, b)| a == b)
}

/// The escape at the start of `bytes` (a `\`): the character, the escape's
/// length, and whether serde_json writes that character so.
fn escape(bytes: &[u8]) -> Option<(char, usize, bool)> {
    let short = |c: char| Some((c, 2, true));
    match *bytes.get(1)? {
        b'"' => short('"'),
        b'\\' => short('\\'),
        b'n' => short('\n'),
        b'r' => short('\r'),
        b't' => short('\t'),
        b'b' => short('\u{8}'),
        b'f' => short('\u{c}'),
        b'/' => Some(('/', 2, false)),
        b'u' => {
            let high = hex4(bytes.get(2..6)?)?;
            let (c, length) = match high {
                0xD800..=0xDBFF => {
                    if bytes.get(6..8)? != b"\\u" {
                        return None;
                    }
                    let low = hex4(bytes.get(8..12)?)?;
                    if !(0xDC00..=0xDFFF).contains(&low) {
                        return None;
                    }
                    (char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?, 12)
                }
                0xDC00..=0xDFFF => return None,
                _ => (char::from_u32(high)?, 6),
            };
            // serde_json writes `\u00xx`, lowercase, only for control
            // characters without a short escape.
            let as_written = length == 6
                && (c as u32) < 0x20
                && !matches!(c, '\n' | '\r' | '\t' | '\u{8}' | '\u{c}')
                && bytes[2..6].iter().all(|b| !b.is_ascii_uppercase());
            Some((c, length, as_written))
        }
        _ => None,
    }
}

fn hex4(digits: &[u8]) -> Option<u32> {
    digits
        .iter()
        .try_fold(0u32, |n, &d| Some(n * 16 + (d as char).to_digit(16)?))
}

enum Number<'b> {
    /// An integer literal within int64 (not `-0`).
    Integer(i64),
    /// A literal with a fraction or an exponent.
    Float { value: f64, text: &'b [u8] },
}

/// The JSON number at `*at`, by JSON's grammar; `None` for anything else,
/// an integer beyond int64, `-0`, or a value beyond a double's range.
fn number<'b>(bytes: &'b [u8], at: &mut usize) -> Option<Number<'b>> {
    let start = *at;
    let mut i = start;
    let negative = bytes.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let from = *i;
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - from
    };
    let first = i;
    let whole = digits(&mut i);
    if whole == 0 || (bytes[first] == b'0' && whole > 1) {
        return None;
    }
    let mut float = false;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return None;
        }
        float = true;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
        float = true;
    }
    *at = i;
    let text = &bytes[start..i];
    if float {
        // The grammar above is ASCII.
        let value: f64 = std::str::from_utf8(text).ok()?.parse().ok()?;
        return value.is_finite().then_some(Number::Float { value, text });
    }
    if negative && whole == 1 && bytes[first] == b'0' {
        // `-0`: the parser's business (is it the integer 0 or -0.0?).
        return None;
    }
    let mut n: i64 = 0;
    for &d in &bytes[first..i] {
        let d = (d - b'0') as i64;
        n = n.checked_mul(10)?;
        n = if negative { n.checked_sub(d)? } else { n.checked_add(d)? };
    }
    Some(Number::Integer(n))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow_array::ArrayRef;

    use super::*;
    use crate::format::parquet::canonical::Canonical;
    use crate::format::parquet::convert::{AppendError, KeyRules};
    use crate::format::parquet::schema::struct_fields;

    fn schema(text: &str) -> Vec<Column> {
        let ColumnType::Struct(columns) = ColumnType::parse(&format!("struct<{text}>")).unwrap() else {
            panic!()
        };
        columns
    }

    /// A small deterministic generator (xorshift).
    struct Random(u64);

    impl Random {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    const COLUMNS: &str = "s:string,i:int64,d:double,b:boolean,n:int32";

    /// A string literal: plain, escaped as serde_json does, or in other
    /// ways JSON allows (or does not).
    fn string(random: &mut Random) -> String {
        let pieces = [
            "abc",
            "é",
            "日本",
            "😀",
            " ",
            "/",
            "\\\"",
            "\\\\",
            "\\n",
            "\\t",
            "\\r",
            "\\b",
            "\\f",
            "\\u0001",
            "\\u001f",
            "\\u001F",
            "\\u000a",
            "\\u00e9",
            "\\u0041",
            "\\/",
            "\\ud83d\\ude00",
            "\\ud83d",
            "\\ude00",
            "\\x",
            "\u{1}",
            "\u{7f}",
        ];
        let mut text = String::from("\"");
        for _ in 0..random.below(4) {
            // Mostly plain text, as in real records.
            text.push_str(if random.below(3) == 0 {
                random.pick(&pieces)
            } else {
                "word"
            });
        }
        text.push('"');
        text
    }

    fn value(random: &mut Random, column: &str) -> String {
        let odd = [
            "null",
            "-0",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "1e400",
            "99999999999999999999",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "2147483648",
            "\"12\"",
            "true",
            "tru",
            "{}",
            "[1]",
            "1.0",
            "0.1",
            "2.5e-3",
            "1E5",
            "1e5",
            "1e+5",
            "-1.5",
            "9007199254740993",
            "9007199254740992",
            "1e16",
            "0.30000000000000004",
            "5e-324",
            "1.7976931348623157e308",
            "nullx",
        ];
        if random.below(16) == 0 {
            return random.pick(&odd).to_owned();
        }
        match column {
            "s" => string(random),
            "i" | "n" => (random.below(2000) as i64 - 1000).to_string(),
            "d" => match random.below(3) {
                0 => (random.below(100) as i64 - 50).to_string(),
                1 => format!("{}", (random.below(100000) as f64 - 50000.0) / 64.0),
                _ => ryu::Buffer::new().format(random.below(1 << 30) as f64 / 7.0).to_owned(),
            },
            _ => random.pick(&["true", "false"]).to_owned(),
        }
    }

    /// A record of some of the columns, mostly compact and in order;
    /// sometimes reordered, repeated, unknown keys, whitespace, wrong
    /// spelling or trailing text.
    fn record(random: &mut Random) -> String {
        let mut keys: Vec<&str> = ["s", "i", "d", "b", "n"]
            .into_iter()
            .filter(|_| random.below(4) != 0)
            .collect();
        match random.below(40) {
            0 => keys.reverse(),
            1 if !keys.is_empty() => keys.push(keys[0]),
            2 => keys.push("x"),
            3 => keys.insert(0, "S"),
            _ => {}
        }
        let entries: Vec<String> = keys
            .iter()
            .map(|key| format!("\"{key}\":{}", value(random, &key.to_ascii_lowercase())))
            .collect();
        let separator = if random.below(40) == 0 { ", " } else { "," };
        let mut text = format!("{{{}}}", entries.join(separator));
        match random.below(100) {
            0 => text.push(' '),
            1 => text.push_str("{}"),
            2 => text.insert(0, ' '),
            3 => text = text.replace(':', " : "),
            4 => {
                let mut half = text.len() / 2;
                while !text.is_char_boundary(half) {
                    half -= 1;
                }
                text.truncate(half);
            }
            _ => {}
        }
        text
    }

    /// What a builder ended with.
    struct Outcome {
        arrays: Vec<ArrayRef>,
        inferred: Vec<Column>,
        /// The inference after 1, 2, 4, 8... records.
        inferred_early: Vec<Vec<Column>>,
        /// Per record: appended or refused (by which error).
        results: Vec<Result<(), String>>,
        /// Per row, whether the flat path read it and what it said.
        rebuilt: Vec<Option<bool>>,
    }

    fn error(err: AppendError) -> String {
        match err {
            AppendError::Convert(err) => format!("{}: {}", err.code, err.message),
            AppendError::Malformed(_) => "malformed".to_owned(),
            AppendError::NotUtf8(_) => "not UTF-8".to_owned(),
            AppendError::TooDeep => "too deep".to_owned(),
        }
    }

    /// Converts `records` under `columns`, inferring as it goes when
    /// `infer`, with or without the flat path first.
    fn convert(columns: &[Column], records: &[String], flat: bool, infer: bool, rules: KeyRules) -> Outcome {
        let mappings = HashMap::new();
        let mut rows = RowBuilder::new(columns, rules, &mappings);
        let mut path = flat.then(|| FlatPath::new(columns, &rows, &mappings).expect("flat columns"));
        let mut inference = infer.then(Inference::default);
        let (mut results, mut rebuilt, mut inferred_early) = (Vec::new(), Vec::new(), Vec::new());
        for (index, record) in records.iter().enumerate() {
            if index.is_power_of_two() {
                inferred_early.extend(inference.as_ref().map(Inference::columns));
            }
            let bytes = record.as_bytes();
            if let Some(canonical) = path
                .as_mut()
                .and_then(|p| p.append(&mut rows, bytes, inference.as_mut()))
            {
                results.push(Ok(()));
                rebuilt.push(Some(canonical));
                continue;
            }
            let result = match &mut inference {
                Some(inference) => rows.append_and_infer(bytes, inference),
                None => rows.append_text(bytes),
            };
            if result.is_ok() {
                rebuilt.push(None);
            }
            results.push(result.map_err(error));
        }
        Outcome {
            arrays: rows.finish(),
            inferred: inference.map(|i| i.columns()).unwrap_or_default(),
            inferred_early,
            results,
            rebuilt,
        }
    }

    #[test]
    fn the_flat_path_reads_what_the_parser_reads() {
        let columns = schema(COLUMNS);
        let mut random = Random(0x5eed);
        let records: Vec<String> = (0..20_000).map(|_| record(&mut random)).collect();
        for infer in [true, false] {
            for rules in [
                KeyRules::default(),
                KeyRules {
                    case_insensitive: false,
                    dots_to_underscores: false,
                },
            ] {
                let flat = convert(&columns, &records, true, infer, rules.clone());
                let parsed = convert(&columns, &records, false, infer, rules);
                assert_eq!(
                    flat.results, parsed.results,
                    "the same records refused, for the same reasons"
                );
                assert_eq!(flat.arrays, parsed.arrays, "the same values");
                assert_eq!(
                    flat.inferred, parsed.inferred,
                    "the same inference, column order included"
                );
                assert_eq!(flat.inferred_early, parsed.inferred_early, "at every step");
                // Whether a record is its row's canonical JSON without
                // null members: as the check on the arrays says.
                let canonical = Canonical::new(&struct_fields(&columns), &parsed.arrays);
                let appended: Vec<&String> = records
                    .iter()
                    .zip(&flat.results)
                    .filter(|(_, r)| r.is_ok())
                    .map(|(record, _)| record)
                    .collect();
                let (mut scratch, mut nulls) = (Vec::new(), Vec::new());
                let (mut read, mut canonical_rows) = (0, 0);
                for (row, (record, rebuilt)) in appended.iter().zip(&flat.rebuilt).enumerate() {
                    if let Some(rebuilt) = rebuilt {
                        read += 1;
                        let expected =
                            canonical.matches(row, record.as_bytes(), &mut scratch, &mut nulls) && nulls.is_empty();
                        assert_eq!(*rebuilt, expected, "{record}");
                        canonical_rows += expected as usize;
                    }
                }
                // The generator makes mostly records the flat path reads,
                // both canonical and not.
                assert!(read > records.len() / 2, "{read} of {} read flat", records.len());
                assert!(
                    canonical_rows > read / 4 && canonical_rows < read,
                    "{canonical_rows} of {read}"
                );
            }
        }
    }

    #[test]
    fn shapes_are_inferred_as_the_parser_infers_them() {
        // Under the previous buffer's columns (d a double), a buffer whose d
        // are all integers infers int64, and a new key goes where it was
        // first seen: `s` before `d`, the key after it there.
        let columns = schema("s:string,d:double,b:boolean");
        let records: Vec<String> = [r#"{"d":1,"b":true}"#, r#"{"s":"x","d":2}"#, r#"{"s":null,"d":-3}"#]
            .map(String::from)
            .to_vec();
        let flat = convert(&columns, &records, true, true, KeyRules::default());
        let parsed = convert(&columns, &records, false, true, KeyRules::default());
        assert_eq!(flat.rebuilt, [Some(true), Some(true), Some(false)], "all read flat");
        assert_eq!(flat.inferred, schema("s:string,d:int64,b:boolean"));
        assert_eq!(flat.inferred, parsed.inferred);
        assert_eq!(flat.arrays, parsed.arrays);
    }

    #[test]
    fn records_a_json_library_writes_are_read_flat_and_rebuilt() {
        // Written by serde_json from a struct: its fields in order, nulls
        // left out.
        #[derive(serde::Serialize, Default)]
        struct Row<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            b: Option<bool>,
            #[serde(skip_serializing_if = "Option::is_none")]
            d: Option<f64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            i: Option<i64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            n: Option<i32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            s: Option<&'a str>,
        }
        let columns = schema("b:boolean,d:double,i:int64,n:int32,s:string");
        let mappings = HashMap::new();
        let mut rows = RowBuilder::new(&columns, KeyRules::default(), &mappings);
        let mut path = FlatPath::new(&columns, &rows, &mappings).unwrap();
        for row in [
            Row {
                b: Some(true),
                d: Some(2.5),
                i: Some(-3),
                n: Some(7),
                s: Some("tab\there \"quoted\" \u{1} é 😀"),
            },
            Row {
                d: Some(0.1),
                s: Some(""),
                ..Row::default()
            },
            Row {
                d: Some(0.25),
                i: Some(i64::MAX),
                ..Row::default()
            },
            Row {
                n: Some(-5),
                ..Row::default()
            },
            Row::default(),
        ] {
            let text = serde_json::to_string(&row).unwrap();
            assert_eq!(path.append(&mut rows, text.as_bytes(), None), Some(true), "{text}");
        }
        for (text, rebuilt) in [
            (r#"{"s":"\u00e9"}"#, false),
            (r#"{"s":"a\/b"}"#, false),
            (r#"{"s":"\u001F"}"#, false),
            (r#"{"s":"\u001f"}"#, true),
            (r#"{"d":1.0}"#, false),
            (r#"{"d":3}"#, true),
            (r#"{"d":1E5}"#, false),
            (r#"{"d":1e16}"#, true),
            (r#"{"d":1e300}"#, true),
            (r#"{"d":1e+300}"#, false),
            (r#"{"d":10000000000000000}"#, false),
            (r#"{"s":null}"#, false),
        ] {
            assert_eq!(path.append(&mut rows, text.as_bytes(), None), Some(rebuilt), "{text}");
        }
        for text in [
            r#"{"i":-0}"#,
            r#"{"i":1.5}"#,
            r#"{"i":"1"}"#,
            r#"{"s":1}"#,
            r#"{"s":"a","i":1}"#,
            r#"{"s":"a","s":"b"}"#,
            r#"{"s":"\ud800"}"#,
            r#"{ "s":"a"}"#,
            r#"{"x":1}"#,
            r#"{"s":"a"}x"#,
            "{\"s\":\"\u{1}\"}",
        ] {
            assert_eq!(path.append(&mut rows, text.as_bytes(), None), None, "{text}");
        }
        assert_eq!(rows.len(), 17);
    }

    #[test]
    fn only_flat_columns_that_find_themselves_take_the_flat_path() {
        let flat = |columns: &str, mappings: &[(&str, &str)]| {
            let columns = schema(columns);
            let mappings: HashMap<String, String> =
                mappings.iter().map(|(c, k)| (c.to_string(), k.to_string())).collect();
            let rows = RowBuilder::new(&columns, KeyRules::default(), &mappings);
            FlatPath::new(&columns, &rows, &mappings).is_some()
        };
        assert!(flat("a:string,b:int64,c:double,d:boolean,e:int32", &[]));
        assert!(!flat("a:string,t:timestamp(ms)", &[]));
        assert!(!flat("a:string,l:list<string>", &[]));
        assert!(!flat("a:string,s:struct<x:int64>", &[]));
        assert!(!flat("a:decimal(10,2)", &[]));
        // Case-insensitive keys: "a" finds the column "b" (mapped from "A"),
        // declared after "a".
        assert!(!flat("a:string,b:string", &[("b", "A")]));
        // Keys JSON escapes.
        assert!(!flat("x:string", &[("x", "a\":\"b")]));
        assert!(!flat("x:string", &[("x", "a\\b")]));
        // A mapped key is read, and its records are not rebuilt (the
        // canonical JSON spells the column's name).
        assert!(flat("user_id:int64", &[("user_id", "user-id")]));
        let columns = schema("user_id:int64");
        let mappings = HashMap::from([("user_id".to_owned(), "user-id".to_owned())]);
        let mut rows = RowBuilder::new(&columns, KeyRules::default(), &mappings);
        let mut path = FlatPath::new(&columns, &rows, &mappings).unwrap();
        assert_eq!(path.append(&mut rows, br#"{"user-id":5}"#, None), Some(false));
        assert_eq!(path.append(&mut rows, br#"{"user_id":5}"#, None), None);
    }
}
