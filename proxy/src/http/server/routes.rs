//! Route templates for metrics and logs: configured prefixes first, else learned by collapsing
//! ids in path segments (numbers, UUIDs, emails, hex tokens, long opaque tokens) to `{id}`. The
//! number of distinct templates is bounded; beyond it requests count as `_other`.

use std::collections::HashSet;
use std::sync::RwLock;

/// Learns and bounds route templates.
#[derive(Debug)]
pub struct RouteTable {
    max: usize,
    /// foldhash (randomly seeded): looked up on every request; bounded by `max`.
    known: RwLock<HashSet<String, foldhash::fast::RandomState>>,
}

impl RouteTable {
    pub fn new(max: usize) -> RouteTable {
        RouteTable {
            max: max.max(1),
            known: RwLock::new(HashSet::default()),
        }
    }

    /// The template for `path` (no query), registering it while there is room.
    pub fn template(&self, path: &str) -> String {
        let t = template_of(path);
        if self
            .known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&t)
        {
            return t;
        }
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        if known.contains(&t) {
            return t;
        }
        if known.len() >= self.max {
            return "_other".to_string();
        }
        known.insert(t.clone());
        t
    }

    /// Known templates, sorted.
    pub fn list(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        v.sort();
        v
    }
}

/// Collapses id-like segments to `{id}`; keeps at most 8 segments.
pub fn template_of(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').skip(1).enumerate() {
        if i == 8 {
            out.push_str("/...");
            break;
        }
        out.push('/');
        if is_id(seg) {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn is_id(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    let b = seg.as_bytes();
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if seg.contains('@') || seg.contains("%40") {
        return true;
    }
    if b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (*c == b'-') && (*c == b'-' || c.is_ascii_hexdigit())
        })
    {
        return true;
    }
    let has_digit = b.iter().any(u8::is_ascii_digit);
    if b.len() >= 8 && has_digit && b.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    // Long opaque tokens (base64url ids, prefixed ids like `cus_9s8d7f6g5h`).
    b.len() >= 16
        && has_digit
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
        || !b.iter().all(|c| c.is_ascii_graphic())
        || seg.len() > 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_collapse() {
        assert_eq!(template_of("/contacts/123/notes"), "/contacts/{id}/notes");
        assert_eq!(
            template_of("/u/0f8fad5b-d9cb-469f-a165-70867728950e"),
            "/u/{id}"
        );
        assert_eq!(
            template_of("/by-email/jane%40example.com"),
            "/by-email/{id}"
        );
        assert_eq!(template_of("/t/deadbeef42"), "/t/{id}");
        assert_eq!(template_of("/c/cus_9s8d7f6g5h4j3k2l"), "/c/{id}");
        assert_eq!(template_of("/api/v2/contacts"), "/api/v2/contacts");
        assert_eq!(template_of("/"), "/");
    }

    #[test]
    fn bounded() {
        let t = RouteTable::new(2);
        assert_eq!(t.template("/a"), "/a");
        assert_eq!(t.template("/b/1"), "/b/{id}");
        assert_eq!(t.template("/c"), "_other");
        assert_eq!(t.template("/b/2"), "/b/{id}");
    }
}
