//! `${VAR}` interpolation in string values, from an injected [`Env`]. Done on the parsed document,
//! not the raw text, so a value can never inject TOML, and an unset variable is reported with the
//! key path that named it.

use std::collections::HashMap;

use super::ConfigError;

/// Where `${VAR}` values come from: the process environment, or a map in tests.
pub trait Env: Send + Sync {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Replaces `${VAR}` in every string of the document; `$${` is a literal `${`.
pub fn interpolate(value: &mut toml::Value, path: &str, env: &dyn Env) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) => *s = expand(s, path, env)?,
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{i}]"), env)?;
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                interpolate(item, &child, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand(text: &str, path: &str, env: &dyn Env) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or_else(|| {
                ConfigError::at(
                    path,
                    "unterminated `${`: write `${NAME}` (or `$${` for a literal)",
                )
            })?;
            let name = &tail[..end];
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(ConfigError::at(
                    path,
                    format!("`${{{name}}}` is not a valid variable name (letters, digits, _)"),
                ));
            }
            let value = env.var(name).ok_or_else(|| {
                ConfigError::at(path, format!("environment variable {name} is not set"))
            })?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([("A".to_owned(), "alpha".to_owned())])
    }

    #[test]
    fn expands_escapes_and_reports_unset() {
        assert_eq!(expand("x${A}y$${A}$", "k", &env()).unwrap(), "xalphay${A}$");
        let err = expand("${MISSING}", "provider.issuer", &env()).unwrap_err();
        assert_eq!(err.path, "provider.issuer");
        assert!(err.reason.contains("MISSING"), "{err}");
        assert!(expand("${A", "k", &env()).is_err());
        assert!(expand("${A-B}", "k", &env()).is_err());
    }
}
