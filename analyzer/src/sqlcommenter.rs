//! sqlcommenter tags: the trailing `/*key='value',...*/` comment that ORMs and OpenTelemetry
//! instrumentations append (keys and values URL-encoded, values single-quoted with `\'` escapes).
//!
//! Only the well-known keys are kept ([`Tags`]); unknown keys are ignored so arbitrary
//! application data never reaches statistics. A comment that is not well-formed sqlcommenter
//! yields no tags.

/// The sqlcommenter tags Vigil keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags {
    pub route: Option<String>,
    pub controller: Option<String>,
    pub action: Option<String>,
    pub framework: Option<String>,
    pub application: Option<String>,
    pub db_driver: Option<String>,
    /// W3C trace context of the request that issued the statement.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// Longest comment body considered (a guard against pathological input).
const MAX_COMMENT: usize = 8192;

impl Tags {
    /// True when no tag is set.
    pub fn is_empty(&self) -> bool {
        *self == Tags::default()
    }

    /// Parses the body of a comment (the text between `/*` and `*/`).
    ///
    /// Returns `None` unless the whole body is a comma-separated list of `key='value'`.
    pub fn parse(body: &str) -> Option<Tags> {
        let body = body.trim();
        if body.is_empty() || body.len() > MAX_COMMENT {
            return None;
        }
        let b = body.as_bytes();
        let mut tags = Tags::default();
        let mut i = 0;
        loop {
            let key_start = i;
            while i < b.len() && b[i] != b'=' {
                if b[i] == b',' || b[i] == b'\'' {
                    return None;
                }
                i += 1;
            }
            if i >= b.len() {
                return None;
            }
            let key = body[key_start..i].trim();
            i += 1;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i >= b.len() || b[i] != b'\'' {
                return None;
            }
            i += 1;
            let val_start = i;
            let mut escaped = false;
            while i < b.len() && b[i] != b'\'' {
                if b[i] == b'\\' {
                    escaped = true;
                    i += 1;
                }
                i += 1;
            }
            if i >= b.len() {
                return None;
            }
            let raw = &body[val_start..i];
            i += 1;
            let value = if escaped {
                unescape(raw)
            } else {
                raw.to_owned()
            };
            tags.set(&url_decode(key), url_decode(&value));
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i == b.len() {
                return Some(tags);
            }
            if b[i] != b',' {
                return None;
            }
            i += 1;
        }
    }

    fn set(&mut self, key: &str, value: String) {
        let slot = match key {
            "route" => &mut self.route,
            "controller" => &mut self.controller,
            "action" => &mut self.action,
            "framework" => &mut self.framework,
            "application" => &mut self.application,
            "db_driver" => &mut self.db_driver,
            "traceparent" => &mut self.traceparent,
            "tracestate" => &mut self.tracestate,
            _ => return,
        };
        *slot = Some(value);
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Percent-decoding (`%2F` -> `/`); invalid escapes are kept literally, invalid UTF-8 is replaced.
pub fn url_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rails_style_tags() {
        let t = Tags::parse(
            "action='index',application='crm',controller='contacts',db_driver='pg',framework='rails%3A7.1',route='%2Fcontacts%2F%3Aid',traceparent='00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'",
        )
        .unwrap();
        assert_eq!(t.route.as_deref(), Some("/contacts/:id"));
        assert_eq!(t.framework.as_deref(), Some("rails:7.1"));
        assert_eq!(t.controller.as_deref(), Some("contacts"));
        assert_eq!(t.action.as_deref(), Some("index"));
        assert_eq!(t.application.as_deref(), Some("crm"));
        assert_eq!(t.db_driver.as_deref(), Some("pg"));
        assert_eq!(
            t.traceparent.as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        assert_eq!(t.tracestate, None);
    }

    #[test]
    fn escapes_spaces_and_unknown_keys() {
        let t = Tags::parse(" route = 'a\\'b' , user%5Fid='42', tracestate='congo%3Dt61rcWkgMzE' ")
            .unwrap();
        assert_eq!(t.route.as_deref(), Some("a'b"));
        assert_eq!(t.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        assert_eq!(t.controller, None);
    }

    #[test]
    fn rejects_ordinary_comments() {
        assert_eq!(Tags::parse("just a comment"), None);
        assert_eq!(Tags::parse("route='unterminated"), None);
        assert_eq!(Tags::parse("route='a' junk"), None);
        assert_eq!(Tags::parse(""), None);
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz%41"), "%zzA");
    }
}
