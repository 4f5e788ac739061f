//! A light JSON tree for conversion: strings borrowed from the record where
//! they have no escapes, objects as a list of entries (no hashing, order and
//! duplicates kept). Cheaper to build than `serde_json::Value`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    /// An integer that fits an i64.
    Int(i64),
    /// A non-negative integer above i64::MAX.
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses one JSON text.
    #[cfg(test)]
    pub fn parse(bytes: &'a [u8]) -> Result<Json<'a>, sonic_rs::Error> {
        sonic_rs::from_slice(bytes)
    }

    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Int(_) | Json::UInt(_) | Json::Float(_) => "a number",
            Json::Str(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    /// Compact JSON text of this value.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(n) => {
                use fmt::Write;
                let _ = write!(out, "{n}");
            }
            Json::UInt(n) => {
                use fmt::Write;
                let _ = write!(out, "{n}");
            }
            Json::Float(f) => {
                out.push_str(&serde_json::Number::from_f64(*f).map_or("null".to_owned(), |n| n.to_string()))
            }
            Json::Str(s) => out.push_str(&serde_json::to_string(s.as_ref()).expect("a string serialises")),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Json::Object(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(key.as_ref()).expect("a string serialises"));
                    out.push(':');
                    value.write_json(out);
                }
                out.push('}');
            }
        }
    }

    /// A short rendering for error messages.
    pub fn preview(&self) -> String {
        let mut text = String::new();
        self.write_json(&mut text);
        if text.len() > 64 {
            let mut cut = 60;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        text
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Json<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

pub(super) struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Json::UInt(v), Json::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Json::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let value = map.next_value()?;
            entries.push((key.0, value));
        }
        Ok(Json::Object(entries))
    }
}

/// An object key, borrowed where it has no escapes.
pub struct Key<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_plain_strings_and_round_trips() {
        let text = br#"{"a":"x","b\u0041":[1,-2,18446744073709551615,1.5,true,null],"c":{}}"#;
        let json = Json::parse(text).unwrap();
        let Json::Object(entries) = &json else { panic!() };
        assert!(matches!(entries[0].0, Cow::Borrowed("a")));
        assert!(matches!(entries[0].1, Json::Str(Cow::Borrowed("x"))));
        assert_eq!(entries[1].0, "bA");
        let mut out = String::new();
        json.write_json(&mut out);
        assert_eq!(
            out,
            r#"{"a":"x","bA":[1,-2,18446744073709551615,1.5,true,null],"c":{}}"#
        );
    }

    #[test]
    fn refuses_what_is_not_one_json_text_of_utf8() {
        // `_spillway_data` is written unchecked as UTF-8 because only
        // records that parse are kept: invalid UTF-8 must not parse.
        for bad in [
            &b"{\"a\":\"\xff\"}"[..],
            b"{\"a\xff\":1}",
            b"{\"a\":1}\xff",
            b"{\"a\":1} x",
            b"{\"a\":1",
            b"{\"a\":tru}",
            b"{\"a\":01}",
            b"",
        ] {
            assert!(Json::parse(bad).is_err(), "{:?} parsed", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            Json::parse(b" {\"a\":1}\r\n ").unwrap(),
            Json::Object(vec![("a".into(), Json::Int(1))])
        );
        // Beyond u64: a double, as serde_json does.
        assert_eq!(
            Json::parse(b"18446744073709551616").unwrap(),
            Json::Float(18446744073709551616.0)
        );
    }
}
