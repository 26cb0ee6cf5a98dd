//! `${ENV_VAR}` interpolation in string values, done on the parsed TOML tree so an error can name
//! the field it is in.
//!
//! Syntax: `${NAME}` (must be set), `${NAME:-default}` (default when unset or empty), `$$` for a
//! literal `$`. Names are `[A-Za-z_][A-Za-z0-9_]*`. A `$` followed by anything else is kept as is.

use super::ConfigError;

/// Replace every `${...}` in every string of `value`, in place. `lookup` reads the environment
/// (passed in so tests need not touch the process environment).
pub fn interpolate_tree(
    value: &mut toml::Value,
    path: &mut Vec<String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) => {
            if s.contains('$') {
                *s = interpolate(s, lookup).map_err(|var| ConfigError::MissingEnv {
                    field: render_path(path),
                    var,
                })?;
            }
            Ok(())
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                interpolate_tree(item, path, lookup)?;
                path.pop();
            }
            Ok(())
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                path.push(k.clone());
                interpolate_tree(v, path, lookup)?;
                path.pop();
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `a.b[0].c` from path segments.
pub fn render_path(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if !seg.starts_with('[') && !out.is_empty() {
            out.push('.');
        }
        out.push_str(seg);
    }
    out
}

/// Interpolate one string; `Err(name)` names the first unset variable.
pub fn interpolate(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body.find('}') else {
            out.push('$');
            rest = after;
            continue;
        };
        let inner = &body[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if !is_name(name) {
            out.push('$');
            rest = after;
            continue;
        }
        match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(name.to_owned()),
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PASS" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_set_variables_defaults_and_escapes() {
        assert_eq!(interpolate("a${PASS}b", &env).unwrap(), "as3cretb");
        assert_eq!(interpolate("${NOPE:-x}", &env).unwrap(), "x");
        assert_eq!(interpolate("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(interpolate("$$5 and $PASS", &env).unwrap(), "$5 and $PASS");
        assert_eq!(interpolate("${not valid}", &env).unwrap(), "${not valid}");
        assert_eq!(interpolate("tail $", &env).unwrap(), "tail $");
    }

    #[test]
    fn names_the_missing_variable() {
        assert_eq!(interpolate("x${MISSING}", &env).unwrap_err(), "MISSING");
        assert_eq!(interpolate("${EMPTY}", &env).unwrap_err(), "EMPTY");
    }

    #[test]
    fn tree_errors_name_the_field() {
        let mut v: toml::Value =
            toml::from_str("[pg]\n[[pg.databases]]\nurl = \"postgres://u:${PGPW}@h/db\"\n")
                .unwrap();
        let err = interpolate_tree(&mut v, &mut Vec::new(), &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `pg.databases[0].url`: environment variable `PGPW` is not set"
        );
    }
}
