//! How spillway's components read their configuration.
//!
//! Each component (a source, a format, a destination) owns its settings: a
//! serde struct of its keys, beside the component, and a function that
//! checks it into the component's options. This crate is what they share:
//!
//! - [`Problems`] collects every problem of a file, not just the first, each
//!   naming its key, the value and what is allowed;
//! - [`Choice`] turns a table chosen by its `type` key (`[source]`,
//!   `[destination]`, `[format]`) into one component, refusing keys of other
//!   types by name, and naming the key of any value of the wrong type;
//! - [`paths`] checks paths only where the answer cannot change before
//!   `run` starts.

mod choice;
pub mod paths;
mod problems;

pub use choice::{keys_of, parse_table, Choice, Given, Variant};
pub use problems::{ConfigProblem, Problems};

/// A configuration table as written, `${VAR}` already expanded.
pub type Table = toml::Table;

/// Whether `name` is an AWS-style resource name: `1..=max` characters of
/// `A-Z a-z 0-9 _ . -` (delivery streams, Kinesis streams).
pub fn is_resource_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}
