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
use jaq_json::Val;
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
        Ok(Self { filter })
    }

    /// Parses a record into a value, refusing what is not JSON or nests
    /// too deep.
    pub fn parse(data: &[u8]) -> Result<Val, RunError> {
        if nests_deeper_than(data, MAX_DEPTH) {
            return Err(RunError::new(
                "Jq.InvalidJson",
                format!("the record nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        jaq_json::read::parse_single(data)
            .map_err(|err| RunError::new("Jq.InvalidJson", format!("the record is not one JSON value: {err}")))
    }

    /// Runs the program on `input`: its values, in order.
    pub fn run(&self, input: Val) -> Result<Vec<Val>, RunError> {
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
                return Err(RunError::new(
                    "Jq.OutputTooDeep",
                    format!("the program made a value nested deeper than {MAX_DEPTH} levels"),
                ));
            }
            outputs.push(value);
        }
        Ok(outputs)
    }
}

/// What a withheld filter does: fail the record.
fn withheld<D: jaq_core::DataT>(_: jaq_core::Cv<'_, D>) -> jaq_core::ValXs<'_, D::V<'_>> {
    jaq_core::box_iter::box_once(Err(jaq_core::Exn::from(jaq_core::Error::str(
        "this filter is not available in spillway (env, input, inputs, halt, debug, stderr, input_filename)",
    ))))
}

/// A value as JSON text (compact).
pub fn to_json(value: &Val) -> Vec<u8> {
    value.to_string().into_bytes()
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
