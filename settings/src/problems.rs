//! Problems with a configuration, each tied to its key.

use std::fmt;

/// One problem with a configuration, tied to the key that causes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The dotted key, such as `buffer.size_mb`; empty for the whole file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found so far, in the order found. Checks return `None`
/// for a value they refused, after adding its problem, so that a caller
/// goes on checking the other keys and reports them all.
#[derive(Debug, Default)]
pub struct Problems(Vec<ConfigProblem>);

impl Problems {
    pub fn add(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.to_owned(),
            message: message.into(),
        });
    }

    pub fn push(&mut self, problem: ConfigProblem) {
        self.0.push(problem);
    }

    /// `value` if it is within `low..=high`.
    pub fn in_range(&mut self, key: &str, value: i64, (low, high): (i64, i64)) -> Option<i64> {
        if (low..=high).contains(&value) {
            Some(value)
        } else {
            self.add(key, format!("{value} is out of range: allowed {low} to {high}"));
            None
        }
    }

    /// `value` parsed by `parse`, which knows the names in `allowed`.
    pub fn one_of<T>(
        &mut self,
        key: &str,
        value: &str,
        allowed: &[&str],
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let parsed = parse(value);
        if parsed.is_none() {
            self.add(
                key,
                format!("{value:?} is not allowed: expected one of {}", allowed.join(", ")),
            );
        }
        parsed
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<ConfigProblem> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_name_key_value_and_what_is_allowed() {
        let mut problems = Problems::default();
        assert_eq!(problems.in_range("a.n", 5, (1, 10)), Some(5));
        assert_eq!(problems.in_range("a.n", 11, (1, 10)), None);
        assert_eq!(
            problems.one_of("a.m", "x", &["y", "z"], |v| (v == "y").then_some(1)),
            None
        );
        assert_eq!(
            problems.one_of("a.m", "y", &["y", "z"], |v| (v == "y").then_some(1)),
            Some(1)
        );
        let shown: Vec<String> = problems.into_vec().iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "a.n: 11 is out of range: allowed 1 to 10",
                "a.m: \"x\" is not allowed: expected one of y, z"
            ]
        );
    }
}
