//! jq programs whose every filter gives at most one value, run on the
//! value directly instead of through jaq's interpreter (issue #18, speed).
//!
//! The programs that partition and trim records are mostly of this shape:
//! `{customer: .customer, day: .ts[0:10]}`, `select(.price > 0) |
//! del(.logo)`. jaq runs each of them through boxed iterators, one per
//! filter, built anew for each record: a tenth of a microsecond per step,
//! most of a jq worker's time on small records. Here such a program is a
//! small tree walked once per record.
//!
//! The part of jq taken (anything else leaves the program to jaq):
//! `.`, literals (numbers, strings without interpolation, `true`, `false`,
//! `null`), paths of indices and slices (`.a.b`, `.[0]`, `.["k"]`,
//! `.a[0:10]`, `?` too), `{k: f, ...}` with fixed keys, `if`/`elif`/`else`,
//! `and`, `or`, `//`, arithmetic, comparisons, unary minus, `|`, `empty`,
//! `not`, `select(f)` and `del(path)`. No definitions, variables,
//! iteration (`.[]`), `,`, `reduce` or calls to other filters.
//!
//! The same results: every operation on values is jaq's own (`index`,
//! `range`, `map_index`, the arithmetic and comparisons of `Val`); what is
//! here is only the order in which jaq evaluates the filters, including
//! which error wins and when no value at all hides an error. A property
//! test runs random programs of this part of jq both ways on random
//! records and compares every value and every error message.

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Term};
use jaq_core::ops::{Cmp, Math};
use jaq_core::path::{Opt, Part};
use jaq_core::{Error, ValT, ValX};
use jaq_json::Val;

/// A filter of the part of jq taken here.
#[derive(Debug)]
pub struct Expr(Node);

#[derive(Debug)]
enum Node {
    Id,
    Lit(Val),
    Empty,
    Neg(Box<Node>),
    Pipe(Box<Node>, Box<Node>),
    /// `if c then t else e end`.
    Ite(Box<Node>, Box<Node>, Box<Node>),
    /// `l or r` (stop at `true`), `l and r` (stop at `false`).
    Logic(Box<Node>, bool, Box<Node>),
    Alt(Box<Node>, Box<Node>),
    Math(Box<Node>, Math, Box<Node>),
    Cmp(Box<Node>, Cmp, Box<Node>),
    /// A path applied to a filter's value; its indices are filters of the
    /// input.
    Path(Box<Node>, Vec<(Part<Node>, Opt)>),
    /// `{k: f, ...}` with fixed keys.
    Obj(Vec<(Val, Node)>),
    /// `del(.a.b)`: the path of the input whose value is removed.
    Del(Vec<(Part<Node>, Opt)>),
}

/// No value, one value, or an error.
type Out<T = Val> = Option<Result<T, Error<Val>>>;

impl Expr {
    /// The program `query` as such a tree, if it is in the part of jq
    /// taken here. `None`: jaq runs it.
    pub fn of(query: &str) -> Option<Self> {
        let term = jaq_core::load::parse(query, |p| p.term())?;
        node(&term).map(Self)
    }

    /// The program's value of `input`: none, one, or the error jaq would
    /// have given.
    pub fn run(&self, input: Val) -> Out {
        self.0.eval(input)
    }
}

fn node(term: &Term<&str>) -> Option<Node> {
    let boxed = |t: &Term<&str>| node(t).map(Box::new);
    Some(match term {
        Term::Id => Node::Id,
        // As jaq compiles numbers: an integer if it is one, else its text.
        Term::Num(text) => Node::Lit(match text.parse::<isize>() {
            Ok(n) => Val::from(n),
            Err(_) => Val::from_num(text).ok()?,
        }),
        Term::Str(None, parts) => Node::Lit(Val::from(literal(parts)?)),
        Term::Neg(t) => Node::Neg(boxed(t)?),
        Term::IfThenElse(if_thens, else_) => {
            let else_ = match else_ {
                Some(e) => node(e)?,
                None => Node::Id,
            };
            if_thens.iter().rev().try_fold(else_, |acc, (c, t)| {
                Some(Node::Ite(boxed(c)?, boxed(t)?, Box::new(acc)))
            })?
        }
        Term::BinOp(l, op, r) => {
            let (l, r) = (boxed(l)?, boxed(r)?);
            match op {
                BinaryOp::Pipe(None) => Node::Pipe(l, r),
                BinaryOp::Or => Node::Logic(l, true, r),
                BinaryOp::And => Node::Logic(l, false, r),
                BinaryOp::Alt => Node::Alt(l, r),
                BinaryOp::Math(op) => Node::Math(l, *op, r),
                BinaryOp::Cmp(op) => Node::Cmp(l, *op, r),
                _ => return None,
            }
        }
        Term::Path(t, path) => Node::Path(boxed(t)?, parts(&path.0)?),
        Term::Obj(entries) => {
            let entries = entries
                .iter()
                .map(|(key, value)| {
                    let Term::Str(None, key) = key else { return None };
                    let key = Val::from(literal(key)?);
                    let value = match value {
                        Some(value) => node(value)?,
                        // `{a}`: `{a: .a}`.
                        None => Node::Path(
                            Box::new(Node::Id),
                            vec![(Part::Index(Node::Lit(key.clone())), Opt::Essential)],
                        ),
                    };
                    Some((key, value))
                })
                .collect::<Option<Vec<_>>>()?;
            Node::Obj(entries)
        }
        // The standard definitions these names have (a program with
        // definitions of its own is not taken).
        Term::Call(name, args) => match (*name, args.as_slice()) {
            ("true", []) => Node::Lit(Val::from(true)),
            ("false", []) => Node::Lit(Val::from(false)),
            ("null", []) => Node::Lit(Val::Null),
            ("empty", []) => Node::Empty,
            ("not", []) => Node::Ite(
                Box::new(Node::Id),
                Box::new(Node::Lit(Val::from(false))),
                Box::new(Node::Lit(Val::from(true))),
            ),
            ("select", [f]) => Node::Ite(boxed(f)?, Box::new(Node::Id), Box::new(Node::Empty)),
            ("del", [Term::Path(base, path)]) if matches!(**base, Term::Id) => Node::Del(parts(&path.0)?),
            _ => return None,
        },
        _ => return None,
    })
}

/// A string without interpolation.
fn literal(parts: &[StrPart<&str, Term<&str>>]) -> Option<String> {
    let mut text = String::new();
    for part in parts {
        match part {
            StrPart::Str(s) => text.push_str(s),
            StrPart::Char(c) => text.push(*c),
            StrPart::Term(_) => return None,
        }
    }
    Some(text)
}

/// Indices and slices; not `.[]`, which gives many values.
fn parts(path: &[(Part<Term<&str>>, Opt)]) -> Option<Vec<(Part<Node>, Opt)>> {
    path.iter()
        .map(|(part, opt)| {
            let part = match part {
                Part::Index(i) => Part::Index(node(i)?),
                Part::Range(None, None) => return None,
                Part::Range(from, upto) => Part::Range(
                    from.as_ref().map(node).map_or(Some(None), |n| n.map(Some))?,
                    upto.as_ref().map(node).map_or(Some(None), |n| n.map(Some))?,
                ),
            };
            Some((part, *opt))
        })
        .collect()
}

impl Node {
    fn eval(&self, input: Val) -> Out {
        match self {
            Node::Id => Some(Ok(input)),
            Node::Lit(value) => Some(Ok(value.clone())),
            Node::Empty => None,
            Node::Neg(f) => Some(f.eval(input)?.and_then(|v| -v)),
            Node::Pipe(l, r) => match l.eval(input)? {
                Ok(y) => r.eval(y),
                Err(e) => Some(Err(e)),
            },
            Node::Ite(c, t, e) => match c.eval(input.clone())? {
                Ok(b) => if b.as_bool() { t } else { e }.eval(input),
                Err(err) => Some(Err(err)),
            },
            Node::Logic(l, stop, r) => match l.eval(input.clone())? {
                Err(e) => Some(Err(e)),
                Ok(b) if b.as_bool() == *stop => Some(Ok(Val::from(*stop))),
                Ok(_) => Some(r.eval(input)?.map(|r| Val::from(r.as_bool()))),
            },
            // jaq keeps the left's errors and true values; else the right.
            Node::Alt(l, r) => match l.eval(input.clone()) {
                Some(Err(e)) => Some(Err(e)),
                Some(Ok(v)) if v.as_bool() => Some(Ok(v)),
                _ => r.eval(input),
            },
            // Both sides are run (left, then right) before either's error
            // counts: no value on either side is no value at all.
            Node::Math(l, op, r) => {
                let x = l.eval(input.clone())?;
                let y = r.eval(input)?;
                Some(x.and_then(|x| op.run(x, y?)))
            }
            Node::Cmp(l, op, r) => {
                let x = l.eval(input.clone())?;
                let y = r.eval(input)?;
                Some(x.and_then(|x| Ok(Val::from(op.run(&x, &y?)))))
            }
            Node::Path(f, path) => {
                let y = match f.eval(input.clone())? {
                    Ok(y) => y,
                    Err(e) => return Some(Err(e)),
                };
                let path = match indices(path, &input)? {
                    Ok(path) => path,
                    Err(e) => return Some(Err(e)),
                };
                let mut value = y;
                for (part, opt) in path {
                    let next = match part {
                        Part::Index(i) => value.index(&i),
                        Part::Range(from, upto) => value.range(from.as_ref()..upto.as_ref()),
                    };
                    value = match (next, opt) {
                        (Ok(v), _) => v,
                        (Err(e), Opt::Essential) => return Some(Err(e)),
                        (Err(_), Opt::Optional) => return None,
                    };
                }
                Some(Ok(value))
            }
            Node::Obj(entries) => {
                let mut values = Vec::with_capacity(entries.len());
                for (_, value) in entries {
                    values.push(value.eval(input.clone())?);
                }
                let mut pairs = Vec::with_capacity(entries.len());
                for ((key, _), value) in entries.iter().zip(values) {
                    match value {
                        Ok(value) => pairs.push((key.clone(), value)),
                        Err(e) => return Some(Err(e)),
                    }
                }
                // jaq's `{a: x, b: y}` is `{a: x} + {b: y}`: a repeated
                // key keeps its first place and its last value, as in a
                // map built in order.
                Some(Val::from_map(pairs))
            }
            // `del(p)` is `p |= empty`: an index with no value changes nothing.
            Node::Del(path) => {
                let path = match indices(path, &input) {
                    None => return Some(Ok(input)),
                    Some(Ok(path)) => path,
                    Some(Err(e)) => return Some(Err(e)),
                };
                Some(remove(&path, input).map_err(|exn| {
                    exn.get_err()
                        .unwrap_or_else(|_| Error::str("the program stopped without an error"))
                }))
            }
        }
    }
}

/// The values of a path's indices, each a filter of `input`, as jaq
/// combines them: no value for any index is no path; else the first error.
fn indices(path: &[(Part<Node>, Opt)], input: &Val) -> Out<Vec<(Part<Val>, Opt)>> {
    // A bound's value: `Some(None)` for no bound, `None` for no value.
    let bound = |n: &Option<Node>| match n {
        None => Some(None),
        Some(n) => n.eval(input.clone()).map(Some),
    };
    let mut values = Vec::with_capacity(path.len());
    for (part, opt) in path {
        let part = match part {
            Part::Index(i) => Part::Index(i.eval(input.clone())?),
            Part::Range(from, upto) => Part::Range(bound(from)?, bound(upto)?),
        };
        values.push((part, *opt));
    }
    let mut path = Vec::with_capacity(values.len());
    for (part, opt) in values {
        let part = match part {
            Part::Index(i) => match i {
                Ok(i) => Part::Index(i),
                Err(e) => return Some(Err(e)),
            },
            Part::Range(from, upto) => match (from.transpose(), upto.transpose()) {
                (Ok(from), Ok(upto)) => Part::Range(from, upto),
                (Err(e), _) | (_, Err(e)) => return Some(Err(e)),
            },
        };
        path.push((part, opt));
    }
    Some(Ok(path))
}

/// `value` with what `path` leads to removed, through jaq's own updates.
fn remove(path: &[(Part<Val>, Opt)], value: Val) -> ValX<'static, Val> {
    let Some(((part, opt), rest)) = path.split_first() else {
        return Ok(value);
    };
    let then = |v: Val| -> Box<dyn Iterator<Item = ValX<'static, Val>>> {
        match rest.is_empty() {
            true => Box::new(std::iter::empty()),
            false => Box::new(std::iter::once(remove(rest, v))),
        }
    };
    match part {
        Part::Index(i) => value.map_index(i, *opt, then),
        Part::Range(from, upto) => value.map_range(from.as_ref()..upto.as_ref(), *opt, then),
    }
}

#[cfg(test)]
mod tests {
    use super::super::program::{to_json, Program};
    use super::*;
    use proptest::prelude::*;

    /// A program's values or error, as JSON text or message.
    fn both_ways(program: &Program, input: &Val) -> (Result<Vec<String>, String>, Result<Vec<String>, String>) {
        let shown = |result: Result<Vec<Val>, super::super::RunError>| {
            result
                .map(|values| {
                    values
                        .iter()
                        .map(|v| String::from_utf8_lossy(&to_json(v)).into_owned())
                        .collect()
                })
                .map_err(|err| format!("{}: {}", err.code, err.message))
        };
        (shown(program.run(input.clone())), shown(program.run_jaq(input.clone())))
    }

    #[test]
    fn programs_that_partition_and_trim_records_are_taken() {
        for query in [
            "{brand: .brand, tier: (if .rating >= 3.5 then \"high\" else \"low\" end)}",
            "select(.totalReviews > 0) | del(.image)",
            "{venue: .venueCode, day: .ts[0:10]}",
            "{customer_id: .customer_id}",
            "{device: .type.device, region: (.region // \"unknown\")}",
            "select(.price != null) | del(.logo)",
            ".",
            "{a}",
        ] {
            assert!(Expr::of(query).is_some(), "{query}");
        }
    }

    #[test]
    fn programs_beyond_one_value_per_filter_are_left_to_jaq() {
        for query in [
            ".[]",
            ".a, .b",
            "def f: .; f",
            ". as $x | $x",
            "\"\\(.a)\"",
            "reduce .[] as $x (0; . + $x)",
            "length",
            "[.a]",
            "{(.k): 1}",
            ".a |= 1",
            "try .a",
            "del(.a, .b)",
            "del(.[])",
            "label $f | 1",
            "@base64",
        ] {
            assert!(Expr::of(query).is_none(), "{query}");
        }
    }

    /// Programs of the part of jq taken here, as text.
    fn program() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just(".".to_owned()),
            Just(".a".to_owned()),
            Just(".b".to_owned()),
            Just(".a.b".to_owned()),
            Just(".a?".to_owned()),
            Just(".[0]".to_owned()),
            Just(".[\"a\"]".to_owned()),
            Just(".a[1:3]".to_owned()),
            Just(".[:2]".to_owned()),
            Just(".[-1:]".to_owned()),
            Just("1".to_owned()),
            Just("0".to_owned()),
            Just("-2".to_owned()),
            Just("3.5".to_owned()),
            Just("1e400".to_owned()),
            Just("\"x\"".to_owned()),
            Just("\"a\"".to_owned()),
            Just("\"t\\tq\\\"\"".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("null".to_owned()),
            Just("empty".to_owned()),
            Just("not".to_owned()),
            Just("{}".to_owned()),
            Just("{a}".to_owned()),
            Just("del(.a)".to_owned()),
            Just("del(.a.b)".to_owned()),
            Just("del(.[0])".to_owned()),
            Just("del(.a[1:2])".to_owned()),
        ];
        leaf.prop_recursive(4, 32, 3, |inner| {
            let op = prop_oneof![
                Just("+"),
                Just("-"),
                Just("*"),
                Just("/"),
                Just("=="),
                Just("!="),
                Just("<"),
                Just("<="),
                Just(">"),
                Just(">="),
                Just("and"),
                Just("or"),
                Just("//"),
                Just("|"),
            ];
            prop_oneof![
                (inner.clone(), op, inner.clone()).prop_map(|(l, op, r)| format!("({l}) {op} ({r})")),
                (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(c, t, e)| format!("if {c} then {t} else {e} end")),
                (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(c, t, d)| format!("if {c} then {t} elif {d} then . end")),
                (inner.clone(), inner.clone()).prop_map(|(x, y)| format!("{{a: {x}, b: ({y})}}")),
                (inner.clone(), inner.clone()).prop_map(|(x, y)| format!("{{a: {x}, \"b\": ({y}), a: 1}}")),
                inner.clone().prop_map(|c| format!("select({c})")),
                inner.clone().prop_map(|x| format!("-({x})")),
                (inner.clone(), inner.clone()).prop_map(|(x, i)| format!("({x})[{i}]")),
                (inner.clone(), inner.clone()).prop_map(|(x, i)| format!("({x})[{i}]?")),
                (inner.clone(), inner.clone()).prop_map(|(f, t)| format!(".a[{f}:{t}]")),
                inner.clone().prop_map(|i| format!("del(.[{i}])")),
                inner.prop_map(|i| format!("del(.a[{i}])")),
            ]
        })
    }

    /// Records of every type, with the keys the programs name.
    fn record() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            any::<bool>().prop_map(|b| b.to_string()),
            (-3i64..4).prop_map(|n| n.to_string()),
            Just("2.5".to_owned()),
            Just("1e400".to_owned()),
            "[abx]{0,4}".prop_map(|s| format!("\"{s}\"")),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|items| format!("[{}]", items.join(","))),
                prop::collection::vec((prop_oneof![Just("a"), Just("b"), Just("c")], inner), 0..4).prop_map(|fields| {
                    let fields: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", fields.join(","))
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Walked directly, a program gives what jaq gives: the same
        /// values in the same order, or the same error.
        #[test]
        fn a_program_walked_directly_gives_what_jaq_gives(
            query in program(),
            records in prop::collection::vec(record(), 1..12),
        ) {
            let program = Program::compile(&query).unwrap();
            prop_assert!(Expr::of(&query).is_some(), "not taken: {}", query);
            for json in records {
                let input = Program::parse(json.as_bytes()).unwrap();
                let (direct, jaq) = both_ways(&program, &input);
                prop_assert_eq!(direct, jaq, "{} on {}", query, json);
            }
        }
    }
}
