//! `${ENV_VAR}` expansion in string values.
//!
//! Expansion happens after TOML parsing and only inside strings, so an
//! expanded value (often a secret) never appears in a syntax error. `$$`
//! stands for a literal `$`; `${VAR:-default}` uses `default` when `VAR` is
//! unset or empty.

use toml::Value;

/// Expands every string in `value`; the error names the key and variable.
pub(super) fn expand_tree(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match value {
        Value::String(s) => {
            *s = expand(s, lookup).map_err(|message| (path.to_owned(), message))?;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_tree(item, &format!("{path}[{i}]"), lookup)?;
            }
        }
        Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                expand_tree(item, &child, lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated ${...} in a string value".to_owned())?;
            let expression = &body[..end];
            let (name, default) = match expression.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expression, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!("${{{name}}} is not a valid environment variable name"));
            }
            match (lookup(name).filter(|v| !v.is_empty() || default.is_none()), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("s3cr3t".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_defaults_and_escapes() {
        assert_eq!(expand("a-${KEY}-b", &lookup).unwrap(), "a-s3cr3t-b");
        assert_eq!(expand("${MISSING:-fallback}", &lookup).unwrap(), "fallback");
        assert_eq!(expand("${EMPTY:-fallback}", &lookup).unwrap(), "fallback");
        assert_eq!(expand("${EMPTY}", &lookup).unwrap(), "");
        assert_eq!(expand("cost $$5 and $x", &lookup).unwrap(), "cost $5 and $x");
        assert_eq!(expand("$${KEY}", &lookup).unwrap(), "${KEY}");
    }

    #[test]
    fn names_the_missing_variable() {
        assert_eq!(
            expand("${NOPE}", &lookup).unwrap_err(),
            "environment variable NOPE is not set"
        );
        assert!(expand("${KEY", &lookup).is_err());
        assert!(expand("${1BAD}", &lookup).is_err());
    }
}
