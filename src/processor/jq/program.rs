//! A compiled jq program (jaq) and running it on one record, safely.
//!
//! The program is the operator's; the records are hostile. So: a record
//! nested deeper than [`MAX_DEPTH`] is not parsed (jaq's parser recurses),
//! a program yields at most [`MAX_OUTPUTS`] values per record and values no
//! deeper than [`MAX_DEPTH`], and the filters that reach outside the record
//! (`env`, `input`, `inputs`, `halt`, `debug`, `stderr`, `input_filename`)
//! are not offered: `halt` would end the process, `env` would show secrets.

use jaq_core::data::JustLut;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars};

use super::direct::Expr;
use super::read;
use bytes::Bytes;
use jaq_json::Val;
use spillway_transforms::escape::find_escape;
use spillway_transforms::strict::{nests_deeper_than, MAX_DEPTH};

/// The most values a program may make of one record.
pub const MAX_OUTPUTS: usize = 10_000;

/// Filters not offered to programs (see the module docs).
const WITHHELD: &[&str] = &[
    "env",
    "input",
    "inputs",
    "halt",
    "halt_error",
    "debug_empty",
    "stderr_empty",
    "input_filename",
];

/// A compiled program.
pub struct Program {
    filter: jaq_core::Filter<JustLut<Val>>,
    /// The same program, walked directly, when it is in the part of jq
    /// [`Expr`] takes.
    direct: Option<Expr>,
}

/// Why a program failed on a record: its `errorCode` and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunError {
    pub code: &'static str,
    pub message: String,
}

impl RunError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl Program {
    /// Compiles `query`; the error names what is wrong, in one line.
    pub fn compile(query: &str) -> Result<Self, String> {
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        // Withheld filters stay defined (the standard definitions use
        // some), as filters that fail.
        let funs = jaq_core::funs::<JustLut<Val>>()
            .chain(jaq_std::funs::<JustLut<Val>>())
            .chain(jaq_json::funs())
            .map(|(name, args, native)| match WITHHELD.contains(&name) {
                true => (
                    name,
                    args,
                    jaq_core::Native::<JustLut<Val>>::new(withheld::<JustLut<Val>>),
                ),
                false => (name, args, native),
            });
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader.load(&arena, File { code: query, path: () }).map_err(|errors| {
            let shown: Vec<String> = errors.iter().map(|(_, e)| describe_load_error(e)).collect();
            format!("does not parse: {}", shown.join("; "))
        })?;
        let filter = Compiler::default().with_funs(funs).compile(modules).map_err(|errors| {
            let shown: Vec<String> = errors
                .iter()
                .flat_map(|(_, errs)| {
                    errs.iter()
                        .map(|(name, undefined)| format!("undefined {} {name}", undefined.as_str()))
                })
                .collect();
            format!("does not compile: {}", shown.join("; "))
        })?;
        Ok(Self {
            filter,
            direct: Expr::of(query),
        })
    }

    /// Parses a record into a value, refusing what is not JSON or nests
    /// too deep.
    pub fn parse(data: &[u8]) -> Result<Val, RunError> {
        Self::parse_record(&Bytes::copy_from_slice(data))
    }

    /// The same, the value's plain strings sharing the record's bytes.
    pub fn parse_record(data: &Bytes) -> Result<Val, RunError> {
        if nests_deeper_than(data, MAX_DEPTH) {
            return Err(RunError::new(
                "Jq.InvalidJson",
                format!("the record nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        if let Some(value) = read::strict(data) {
            return Ok(value);
        }
        jaq_json::read::parse_single(data)
            .map_err(|err| RunError::new("Jq.InvalidJson", format!("the record is not one JSON value: {err}")))
    }

    /// Runs the program on `input`: its values, in order.
    pub fn run(&self, input: Val) -> Result<Vec<Val>, RunError> {
        let Some(direct) = &self.direct else {
            return self.run_jaq(input);
        };
        match direct.run(input) {
            None => Ok(Vec::new()),
            Some(Ok(value)) if deeper_than(&value, MAX_DEPTH) => Err(too_deep()),
            Some(Ok(value)) => Ok(vec![value]),
            Some(Err(err)) => Err(RunError::new("Jq.ExecutionFailed", truncate(err.to_string()))),
        }
    }

    /// Runs the program through jaq's interpreter.
    pub(super) fn run_jaq(&self, input: Val) -> Result<Vec<Val>, RunError> {
        let ctx = Ctx::<JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        let mut outputs = Vec::new();
        for output in self.filter.id.run((ctx, input)) {
            let value = match output {
                Ok(value) => value,
                Err(exn) => {
                    let message = match exn.get_err() {
                        Ok(err) => err.to_string(),
                        Err(_) => "the program stopped without an error".to_owned(),
                    };
                    return Err(RunError::new("Jq.ExecutionFailed", truncate(message)));
                }
            };
            if outputs.len() == MAX_OUTPUTS {
                return Err(RunError::new(
                    "Jq.TooManyOutputs",
                    format!("the program made more than {MAX_OUTPUTS} values of the record"),
                ));
            }
            if deeper_than(&value, MAX_DEPTH) {
                return Err(too_deep());
            }
            outputs.push(value);
        }
        Ok(outputs)
    }
}

fn too_deep() -> RunError {
    RunError::new(
        "Jq.OutputTooDeep",
        format!("the program made a value nested deeper than {MAX_DEPTH} levels"),
    )
}

/// What a withheld filter does: fail the record.
fn withheld<D: jaq_core::DataT>(_: jaq_core::Cv<'_, D>) -> jaq_core::ValXs<'_, D::V<'_>> {
    jaq_core::box_iter::box_once(Err(jaq_core::Exn::from(jaq_core::Error::str(
        "this filter is not available in spillway (env, input, inputs, halt, debug, stderr, input_filename)",
    ))))
}

/// A value as JSON text (compact): the bytes jaq's `Display` writes.
///
/// Written directly into the buffer rather than through `core::fmt`,
/// which went through a formatter call per byte run and checked each
/// string for invalid UTF-8 piece by piece: a tenth of a jq worker's time
/// on product records (issue #18, speed). A value holding what only
/// `Display` knows how to write (a byte string, a string that is not
/// UTF-8, to be written lossily) is written by `Display`.
pub fn to_json(value: &Val) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    match write_json(&mut out, value) {
        Ok(()) => out,
        Err(NotPlain) => value.to_string().into_bytes(),
    }
}

/// A value [`write_json`] leaves to `Display`.
struct NotPlain;

fn write_json(out: &mut Vec<u8>, value: &Val) -> Result<(), NotPlain> {
    match value {
        Val::Null => out.extend_from_slice(b"null"),
        Val::Bool(true) => out.extend_from_slice(b"true"),
        Val::Bool(false) => out.extend_from_slice(b"false"),
        // As jaq's `Display` writes them, without fmt's machinery for the
        // common cases.
        Val::Num(jaq_json::Num::Int(i)) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Val::Num(jaq_json::Num::Float(x)) if x.is_finite() => {
            out.extend_from_slice(ryu::Buffer::new().format_finite(*x).as_bytes())
        }
        Val::Num(jaq_json::Num::Dec(text)) => out.extend_from_slice(text.as_bytes()),
        Val::Num(n) => {
            use std::io::Write;
            write!(out, "{n}").expect("writing to a Vec does not fail");
        }
        Val::TStr(text) => write_string(out, text)?,
        Val::BStr(_) => return Err(NotPlain),
        Val::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, item)?;
            }
            out.push(b']');
        }
        Val::Obj(map) => {
            out.push(b'{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, key)?;
                out.push(b':');
                write_json(out, item)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// A string as jaq writes it: `"`, `\\`, `\t`, `\n`, `\r`, `\b`, `\f`
/// escaped by name, other control characters and DEL as `\u00xx`. Plain
/// runs are found sixteen bytes at a time (`find_escape`), then DEL in
/// what they hold: most strings have nothing to escape, and writing output
/// strings showed in the jq workers' profile (issue #18, speed).
fn write_string(out: &mut Vec<u8>, text: &[u8]) -> Result<(), NotPlain> {
    if std::str::from_utf8(text).is_err() {
        return Err(NotPlain);
    }
    out.push(b'"');
    let mut rest = text;
    loop {
        let plain = find_escape(rest).unwrap_or(rest.len());
        let plain = memchr::memchr(0x7f, &rest[..plain]).unwrap_or(plain);
        out.extend_from_slice(&rest[..plain]);
        let Some(&byte) = rest.get(plain) else { break };
        let escaped: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ]);
                rest = &rest[plain + 1..];
                continue;
            }
        };
        out.extend_from_slice(escaped);
        rest = &rest[plain + 1..];
    }
    out.push(b'"');
    Ok(())
}

/// Whether `value` nests deeper than `limit`, without recursion.
fn deeper_than(value: &Val, limit: usize) -> bool {
    let mut stack: Vec<(&Val, usize)> = vec![(value, 0)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            Val::Arr(items) => {
                if depth + 1 > limit {
                    return true;
                }
                stack.extend(items.iter().map(|v| (v, depth + 1)));
            }
            Val::Obj(map) => {
                if depth + 1 > limit {
                    return true;
                }
                stack.extend(map.values().map(|v| (v, depth + 1)));
            }
            _ => {}
        }
    }
    false
}

/// Error messages can hold record content: bounded.
fn truncate(mut message: String) -> String {
    const MAX: usize = 500;
    if message.len() > MAX {
        let mut cut = MAX;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}

fn describe_load_error<S: std::fmt::Debug>(error: &jaq_core::load::Error<S>) -> String {
    use jaq_core::load::Error;
    match error {
        Error::Io(errors) => errors.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>().join(", "),
        Error::Lex(errors) => format!("{} lexing error(s): {errors:?}", errors.len()),
        Error::Parse(errors) => format!("{} parse error(s): {errors:?}", errors.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(query: &str, input: &str) -> Result<Vec<String>, RunError> {
        let program = Program::compile(query).unwrap();
        let value = Program::parse(input.as_bytes())?;
        Ok(program
            .run(value)?
            .iter()
            .map(|v| String::from_utf8(to_json(v)).unwrap())
            .collect())
    }

    proptest::proptest! {
        /// Whatever the JSON, the direct writer writes what jaq's
        /// `Display` writes (strings with control characters, escapes,
        /// non-ASCII text, numbers of every shape, nesting).
        #[test]
        fn to_json_writes_what_display_writes(json in json_text()) {
            // The number pattern makes some text that is not JSON (`01`).
            let parsed = Program::parse(json.as_bytes());
            proptest::prop_assume!(parsed.is_ok());
            let value = parsed.unwrap();
            let expected = value.to_string().into_bytes();
            let mut direct = Vec::new();
            proptest::prop_assert!(write_json(&mut direct, &value).is_ok());
            proptest::prop_assert_eq!(String::from_utf8_lossy(&direct), String::from_utf8_lossy(&expected));
        }
    }

    /// JSON text of values up to a few levels deep.
    fn json_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just("null".to_owned()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| f.to_string()),
            "-?[1-9][0-9]{0,29}(\\.[0-9]{1,10})?([eE][+-]?[0-9]{1,3})?",
            any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
            "[\\u{0}-\\u{7f}]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            // Long enough for the sixteen-byte scan, escapes anywhere.
            "([ -~]{0,40}[\\u{0}-\\u{1f}\\u{7f}\"\\\\]){0,3}[ -~\\u{e9}]{0,40}"
                .prop_map(|s| serde_json::to_string(&s).unwrap()),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(|items| format!("[{}]", items.join(","))),
                prop::collection::vec((any::<String>(), inner), 0..6).prop_map(|fields| {
                    let fields: Vec<String> = fields
                        .into_iter()
                        .map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).unwrap()))
                        .collect();
                    format!("{{{}}}", fields.join(","))
                }),
            ]
        })
    }

    #[test]
    fn a_string_that_is_not_utf8_is_written_as_display_writes_it() {
        let value = Program::parse(b"[\"a\xffb\"]").unwrap();
        assert_eq!(to_json(&value), value.to_string().into_bytes());
    }

    #[test]
    fn zero_one_or_many_values() {
        assert_eq!(run("select(.a > 1)", r#"{"a":1}"#).unwrap(), Vec::<String>::new());
        assert_eq!(run("del(.b)", r#"{"a":2,"b":3}"#).unwrap(), [r#"{"a":2}"#]);
        assert_eq!(run(".[]", "[1,2,3]").unwrap(), ["1", "2", "3"]);
    }

    #[test]
    fn runtime_errors_and_bad_input_have_codes() {
        assert_eq!(run(".a + 1", r#"{"a":"x"}"#).unwrap_err().code, "Jq.ExecutionFailed");
        assert_eq!(run(".", "not json").unwrap_err().code, "Jq.InvalidJson");
        assert_eq!(run(".", "1 2").unwrap_err().code, "Jq.InvalidJson");
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(run(".", &deep).unwrap_err().code, "Jq.InvalidJson");
        assert_eq!(run("range(100000)", "null").unwrap_err().code, "Jq.TooManyOutputs");
        assert_eq!(
            run("reduce range(200) as $i (.; [.])", "null").unwrap_err().code,
            "Jq.OutputTooDeep"
        );
    }

    #[test]
    fn filters_reaching_outside_the_record_are_withheld() {
        assert!(Program::compile("$ENV").is_err());
        for query in [
            "env",
            "halt",
            "input",
            "debug",
            "halt_error",
            "\"x\" | stderr",
            "env.HOME",
        ] {
            // Either not defined at all, or a filter that fails the record.
            if let Ok(program) = Program::compile(query) {
                assert_eq!(
                    program.run(Val::Null).unwrap_err().code,
                    "Jq.ExecutionFailed",
                    "{query}"
                );
            }
        }
        assert!(Program::compile("{venue: .venueCode, day: .ts[0:10]}").is_ok());
        let Err(why) = Program::compile("select(") else {
            panic!("an unfinished program compiled")
        };
        assert!(why.starts_with("does not parse"), "{why}");
    }
}
