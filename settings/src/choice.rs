//! A table chosen by its `type` key: `[source]`, `[format]`,
//! `[destination]`.
//!
//! Each component is one [`Variant`]: its name, its keys (those of its own
//! serde struct, read from the struct itself), and how its table becomes
//! the component's options. A [`Choice`] holds the variants, in the one
//! place they are registered, and resolves a table:
//!
//! - the `type` must name a variant (or the default applies);
//! - a key of another variant is refused by name, saying which types take
//!   it ("only allowed with destination.type = \"s3\", not \"local\"");
//! - a key of no variant is refused as unknown, listing the chosen type's
//!   keys;
//! - the rest is deserialized into the variant's struct, and a value of the
//!   wrong type names its full key (`destination.multipart_threshold_mb`).
//!
//! Why not serde's `#[serde(tag = "type")]` enums: serde buffers an
//! internally tagged table before choosing the variant, so an error inside
//! it loses its path (`destination: invalid type: string "x", expected
//! i64`), and it stops at the first problem where `validate` reports them
//! all. The variants' structs still refuse unknown keys themselves
//! (`#[serde(deny_unknown_fields)]`).

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use crate::{ConfigProblem, Problems, Table};

/// The keys of a struct deriving `Deserialize`, in declaration order (its
/// serde names): what a [`Variant`] takes.
pub fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe(Option<&'static [&'static str]>);
    impl<'de> Deserializer<'de> for &mut Probe {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(de::Error::custom("keys read"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut probe = Probe(None);
    let _ = T::deserialize(&mut probe);
    probe.0.unwrap_or(&[])
}

/// What a variant's builder is given: its table without `type` and without
/// the keys refused, those refusals, and where to add problems.
pub struct Given<'p> {
    /// The table's dotted key: `destination`, `destination.backup`, ...
    pub key: &'p str,
    pub table: Table,
    /// Keys of other types, and unknown keys, already explained; added to
    /// `problems` by [`Given::report_refused`] (the builder chooses when,
    /// so that problems read in the order of the keys' meaning).
    pub refused: Vec<ConfigProblem>,
    pub problems: &'p mut Problems,
}

impl Given<'_> {
    pub fn report_refused(&mut self) {
        for problem in self.refused.drain(..) {
            self.problems.push(problem);
        }
    }

    /// Deserializes `keys` of the table (all of it when `None`) into `R`,
    /// naming the full key of a value of the wrong type.
    pub fn parse<R: DeserializeOwned>(&mut self, keys: Option<&[&str]>) -> Option<R> {
        let table: Table = match keys {
            None => std::mem::take(&mut self.table),
            Some(keys) => keys
                .iter()
                .filter_map(|k| self.table.remove(*k).map(|v| ((*k).to_owned(), v)))
                .collect(),
        };
        parse_table(self.key, table, self.problems)
    }
}

/// `table` as `R`; a problem naming the full key if it is not.
pub fn parse_table<R: DeserializeOwned>(key: &str, table: Table, problems: &mut Problems) -> Option<R> {
    match serde_path_to_error::deserialize::<_, R>(toml::Value::Table(table)) {
        Ok(value) => Some(value),
        Err(err) => {
            let path = err.path().to_string();
            let full = if path == "." {
                key.to_owned()
            } else {
                format!("{key}.{path}")
            };
            // The toml deserializer appends "in `table`" lines: the key says it.
            let message = err.into_inner().to_string();
            problems.add(&full, message.lines().next().unwrap_or_default());
            None
        }
    }
}

type Build<'a, T> = Box<dyn Fn(Given<'_>) -> Option<T> + 'a>;

/// One component that a table may choose.
pub struct Variant<'a, T> {
    name: &'static str,
    keys: Vec<&'static str>,
    build: Build<'a, T>,
}

impl<'a, T> Variant<'a, T> {
    /// The component `name`, whose keys are those of `R`: keys refused
    /// first, then `R` parsed and checked by `check` (given the table's
    /// key and where to add problems).
    pub fn new<R: DeserializeOwned>(
        name: &'static str,
        check: impl Fn(R, &str, &mut Problems) -> Option<T> + 'a,
    ) -> Self {
        Self::custom(name, keys_of::<R>().to_vec(), move |mut given| {
            given.report_refused();
            let raw = given.parse::<R>(None)?;
            check(raw, given.key, given.problems)
        })
    }

    /// A component whose keys come from more than one struct: `build`
    /// parses them (with [`Given::parse`]) and reports the refusals.
    pub fn custom(name: &'static str, keys: Vec<&'static str>, build: impl Fn(Given<'_>) -> Option<T> + 'a) -> Self {
        Self {
            name,
            keys,
            build: Box::new(build),
        }
    }
}

/// How a key of another type is refused: `(table key, key, the types that
/// take it, quoted and joined, the chosen type)` → the message.
pub type Refusal = fn(&str, &str, &str, &str) -> String;

/// The components a table may choose, in the one place they are
/// registered.
pub struct Choice<'a, T> {
    pub variants: Vec<Variant<'a, T>>,
    /// The type when the table names none; `None`: `type` is required.
    pub default: Option<&'static str>,
    pub refusal: Refusal,
}

impl<T> Choice<'_, T> {
    pub fn names(&self) -> Vec<&'static str> {
        self.variants.iter().map(|v| v.name).collect()
    }

    /// The component `table` (at `key`) chooses, out of every variant.
    pub fn resolve(&self, key: &str, table: Table, problems: &mut Problems) -> Option<T> {
        self.resolve_among(key, table, &self.names(), problems)
    }

    /// The component `table` chooses, which must be one of `allowed` (a
    /// backup takes only some destinations); keys of every variant are
    /// still known, and refused by name.
    pub fn resolve_among(&self, key: &str, mut table: Table, allowed: &[&str], problems: &mut Problems) -> Option<T> {
        let name = match table.remove("type") {
            None => match self.default {
                Some(default) => default.to_owned(),
                None => {
                    problems.add(
                        &format!("{key}.type"),
                        format!("is required: expected one of {}", allowed.join(", ")),
                    );
                    return None;
                }
            },
            Some(toml::Value::String(name)) => name,
            Some(other) => {
                problems.add(
                    &format!("{key}.type"),
                    format!("{other} is not allowed: expected one of {}", allowed.join(", ")),
                );
                return None;
            }
        };
        let variant = problems.one_of(&format!("{key}.type"), &name, allowed, |name| {
            self.variants.iter().find(|v| v.name == name && allowed.contains(&name))
        })?;
        let refused = self.refuse(key, &mut table, variant);
        (variant.build)(Given {
            key,
            table,
            refused,
            problems,
        })
    }

    /// Takes out of `table` the keys `chosen` does not take: those of other
    /// variants in the order they are declared, then unknown ones.
    fn refuse(&self, key: &str, table: &mut Table, chosen: &Variant<'_, T>) -> Vec<ConfigProblem> {
        let mut refused = Vec::new();
        let mut known: Vec<&str> = Vec::new();
        for variant in &self.variants {
            for name in &variant.keys {
                if known.contains(name) {
                    continue;
                }
                known.push(name);
                if chosen.keys.contains(name) || table.remove(*name).is_none() {
                    continue;
                }
                let owners: Vec<String> = self
                    .variants
                    .iter()
                    .filter(|v| v.keys.contains(name))
                    .map(|v| format!("{:?}", v.name))
                    .collect();
                refused.push(ConfigProblem {
                    key: format!("{key}.{name}"),
                    message: (self.refusal)(key, name, &join_or(&owners), chosen.name),
                });
            }
        }
        let unknown: Vec<String> = table
            .keys()
            .filter(|k| !chosen.keys.contains(&k.as_str()))
            .cloned()
            .collect();
        for name in unknown {
            table.remove(&name);
            let expected = match chosen.keys.as_slice() {
                [] => format!("{key}.type = {:?} takes no other keys", chosen.name),
                keys => {
                    let keys: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
                    format!("expected one of {}", keys.join(", "))
                }
            };
            refused.push(ConfigProblem {
                key: format!("{key}.{name}"),
                message: format!("unknown field `{name}`, {expected}"),
            });
        }
        refused
    }
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Red {
        shade: Option<i64>,
        name: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Blue {
        depth: i64,
        name: Option<String>,
    }

    #[derive(Debug, PartialEq)]
    enum Colour {
        Red(Red),
        Blue(Blue),
    }

    fn choice() -> Choice<'static, Colour> {
        Choice {
            variants: vec![
                Variant::new("red", |raw: Red, _, _| Some(Colour::Red(raw))),
                Variant::new("blue", |raw: Blue, key, problems| {
                    problems.in_range(&format!("{key}.depth"), raw.depth, (0, 9))?;
                    Some(Colour::Blue(raw))
                }),
            ],
            default: Some("red"),
            refusal: |key, _, owners, chosen| format!("only allowed with {key}.type = {owners}, not {chosen:?}"),
        }
    }

    fn resolve(text: &str) -> (Option<Colour>, Vec<String>) {
        let mut problems = Problems::default();
        let table: Table = toml::from_str(text).unwrap();
        let colour = choice().resolve("paint", table, &mut problems);
        (colour, problems.into_vec().iter().map(ToString::to_string).collect())
    }

    #[test]
    fn the_keys_of_a_struct_are_read_from_it() {
        assert_eq!(keys_of::<Red>(), ["shade", "name"]);
        assert_eq!(keys_of::<Blue>(), ["depth", "name"]);
    }

    #[test]
    fn a_table_becomes_the_variant_its_type_names() {
        assert_eq!(
            resolve("type = \"blue\"\ndepth = 3\n"),
            (Some(Colour::Blue(Blue { depth: 3, name: None })), vec![])
        );
        assert_eq!(
            resolve("name = \"x\"\n").0,
            Some(Colour::Red(Red {
                shade: None,
                name: Some("x".into())
            }))
        );
    }

    #[test]
    fn problems_name_the_key_and_all_are_reported() {
        let (colour, problems) = resolve("type = \"blue\"\ndepth = 30\nshade = 1\nhue = 2\n");
        assert_eq!(colour, None);
        assert_eq!(
            problems,
            [
                "paint.shade: only allowed with paint.type = \"red\", not \"blue\"",
                "paint.hue: unknown field `hue`, expected one of `depth`, `name`",
                "paint.depth: 30 is out of range: allowed 0 to 9",
            ]
        );
        assert_eq!(
            resolve("type = \"blue\"\ndepth = \"deep\"\n").1,
            ["paint.depth: invalid type: string \"deep\", expected i64"]
        );
        assert_eq!(
            resolve("type = \"green\"\n").1,
            ["paint.type: \"green\" is not allowed: expected one of red, blue"]
        );
        assert_eq!(
            resolve("type = 7\n").1,
            ["paint.type: 7 is not allowed: expected one of red, blue"]
        );
    }

    #[test]
    fn a_choice_among_some_variants_still_knows_the_others_keys() {
        let mut problems = Problems::default();
        let table: Table = toml::from_str("type = \"blue\"\ndepth = 1\n").unwrap();
        assert_eq!(choice().resolve_among("paint", table, &["red"], &mut problems), None);
        let table: Table = toml::from_str("depth = 1\n").unwrap();
        assert_eq!(
            choice().resolve_among("paint", table, &["red"], &mut problems),
            Some(Colour::Red(Red {
                shade: None,
                name: None
            }))
        );
        let shown: Vec<String> = problems.into_vec().iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "paint.type: \"blue\" is not allowed: expected one of red",
                "paint.depth: only allowed with paint.type = \"blue\", not \"red\"",
            ]
        );
    }
}
