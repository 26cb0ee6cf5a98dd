//! sqlcommenter tags: `SQL /*application='democrm',route='...'*/`, keys sorted, values
//! URL-encoded (everything but ASCII alphanumerics and `-_.~` is percent-encoded).

/// The `application` tag value.
pub const APPLICATION: &str = "democrm";

/// Percent-encodes a sqlcommenter value.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The comment for `route` (`/*application='democrm',route='%2Fcontacts'*/`).
pub fn comment(route: &str) -> String {
    format!("/*application='{APPLICATION}',route='{}'*/", encode(route))
}

/// `sql` with the route comment appended.
pub fn tag(sql: &str, route: &str) -> String {
    format!("{} {}", sql.trim_end(), comment(route))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_route_values() {
        assert_eq!(
            tag("SELECT 1", "/contacts/{id}"),
            "SELECT 1 /*application='democrm',route='%2Fcontacts%2F%7Bid%7D'*/"
        );
        assert_eq!(encode("a b'c"), "a%20b%27c");
    }
}
