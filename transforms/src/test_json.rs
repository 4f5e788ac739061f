//! Arbitrary and hostile JSON records for property tests: odd numbers
//! (`1e400`, `-0`, integers beyond u64), escapes (lone surrogates, control
//! characters, brackets and quotes in strings and keys), keys that collide
//! by case or dots or are reserved, nesting on both sides of
//! [`crate::strict::MAX_DEPTH`], and texts broken byte by byte (cut short,
//! invalid UTF-8, a stray bracket).

use proptest::collection::vec;
use proptest::prelude::*;

/// A JSON value as the generator builds it: numbers and strings keep the
/// exact text they are written as.
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number's text, valid by JSON's grammar (maybe out of range).
    Number(String),
    /// The string's body between its quotes, escapes included.
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    pub fn write(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(text) => out.push_str(text),
            Value::Str(body) => {
                out.push('"');
                out.push_str(body);
                out.push('"');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Value::Object(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('"');
                    out.push_str(key);
                    out.push_str("\":");
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    /// How deep arrays and objects nest (a scalar is 0).
    pub fn depth(&self) -> usize {
        match self {
            Value::Array(items) => 1 + items.iter().map(Value::depth).max().unwrap_or(0),
            Value::Object(entries) => 1 + entries.iter().map(|(_, v)| v.depth()).max().unwrap_or(0),
            _ => 0,
        }
    }
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        40 => any::<i64>().prop_map(|n| n.to_string()),
        10 => any::<u64>().prop_map(|n| n.to_string()),
        30 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:?}")),
        10 => (0u32..1000).prop_map(|n| format!("{n}.50")),
        20 => prop::sample::select(vec![
            "0", "-0", "1e-400", "1E+2", "2.5e-3", "0.1", "3.0", "9007199254740993",
            "123456789012345678901234567890", "-9223372036854775808", "18446744073709551616", "1e308",
        ])
        .prop_map(str::to_owned),
        // Beyond a double's range: malformed for spillway.
        2 => prop::sample::select(vec!["1e400", "-1e400"]).prop_map(str::to_owned),
    ]
}

/// A string body: plain characters escaped as JSON needs, and escapes.
fn string_body() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        60 => any::<char>().prop_map(|c| match c {
            '"' => "\\\"".to_owned(),
            '\\' => "\\\\".to_owned(),
            c if (c as u32) < 0x20 => format!("\\u{:04x}", c as u32),
            c => c.to_string(),
        }),
        30 => prop::sample::select(vec!["a", "b", "x", " ", "[", "]", "{", "}", ":", ",", "é", "😀"]).prop_map(str::to_owned),
        20 => prop::sample::select(vec![
            "\\\"", "\\\\", "\\/", "\\n", "\\t", "\\u0000", "\\u00e9", "\\ud83d\\ude00", "\\u005b",
        ])
        .prop_map(str::to_owned),
        // Lone surrogates: malformed for spillway (two in a row may pair).
        2 => prop::sample::select(vec!["\\ud800", "\\udc00"]).prop_map(str::to_owned),
    ];
    vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

/// Keys: a few that collide (case, dots), reserved ones, and arbitrary ones.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "a", "A", "b", "c", "id", "ID", "name", "tags", "user", "k", "a.b", "a_b", "_spillway_data",
            "_SPILLWAY_x", "",
        ])
        .prop_map(str::to_owned),
        1 => string_body(),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        3 => number().prop_map(Value::Number),
        3 => string_body().prop_map(Value::Str),
    ]
}

/// Any value, a few levels deep.
pub fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((key(), inner), 0..6).prop_map(Value::Object),
        ]
    })
}

/// A value wrapped in arrays and objects to `levels` more levels, close to
/// [`crate::strict::MAX_DEPTH`] on either side.
fn deep() -> impl Strategy<Value = Value> {
    (scalar(), vec((any::<bool>(), key()), 24..40)).prop_map(|(mut value, wrappers)| {
        for (array, key) in wrappers {
            value = if array {
                Value::Array(vec![value])
            } else {
                Value::Object(vec![(key, value)])
            };
        }
        value
    })
}

/// A record's text: mostly objects, some deep, some not objects at all.
pub fn record_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => vec((key(), value()), 0..6).prop_map(Value::Object),
        2 => (vec((key(), value()), 0..3), key(), deep()).prop_map(|(mut entries, key, deep)| {
            entries.push((key, deep));
            Value::Object(entries)
        }),
        1 => value(),
    ]
}

/// A record's bytes: a generated record, sometimes broken by one edit.
pub fn record_bytes() -> impl Strategy<Value = Vec<u8>> {
    let edit = prop_oneof![
        3 => Just(None),
        1 => (any::<prop::sample::Index>(), prop::sample::select(vec![0xffu8, 0xc3, b'"', b'[', b'{', b'}', b',', b'\\', 0, b' ']))
            .prop_map(Some),
    ];
    (record_value(), prop::bool::weighted(0.1), edit).prop_map(|(value, cut, edit)| {
        let mut bytes = value.text().into_bytes();
        if let Some((at, byte)) = edit {
            let at = at.index(bytes.len() + 1);
            if cut {
                bytes.truncate(at);
            } else {
                bytes.insert(at, byte);
            }
        }
        bytes
    })
}
