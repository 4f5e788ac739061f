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

use arrow_array::ArrayRef;

mod children;
mod column;
mod flat;
mod scalar;
mod stream;
mod vectors;

pub(super) use children::{smallvec_free, Children, KeyHints};
pub use column::ColumnBuilder;
pub(super) use column::Kind;
pub(super) use flat::FlatPath;
pub use stream::AppendError;
pub(super) use stream::Failure;
pub(super) use vectors::{take_sized, Strings};

#[cfg(test)]
use super::json::Json;
use super::schema::Column;

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
    use std::sync::Arc;

    use arrow_array::{
        Array, Date32Array, Decimal128Array, Int64Array, ListArray, MapArray, RecordBatch, StringArray, StructArray,
    };

    use super::*;
    use crate::format::parquet::schema::{struct_fields, ColumnType};

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
