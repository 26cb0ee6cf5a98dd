//! Route templates for metrics and logs: configured prefixes first, else learned by collapsing
//! ids in path segments (numbers, UUIDs, emails, hex tokens, long opaque tokens) to `{id}`. The
//! number of distinct templates is bounded; beyond it requests count as `_other`.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::{Arc, RwLock};

/// Learns and bounds route templates.
#[derive(Debug)]
pub struct RouteTable {
    max: usize,
    /// foldhash (randomly seeded): looked up on every request; bounded by `max`. A known
    /// template is handed out as a shared `Arc<str>`, so the request path allocates nothing.
    known: RwLock<HashSet<Arc<str>, foldhash::fast::RandomState>>,
    other: Arc<str>,
}

thread_local! {
    /// The template being built for the current request (reused: no allocation per request).
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

impl RouteTable {
    pub fn new(max: usize) -> RouteTable {
        RouteTable {
            max: max.max(1),
            known: RwLock::new(HashSet::default()),
            other: Arc::from("_other"),
        }
    }

    /// The template for `path` (no query), registering it while there is room.
    pub fn template(&self, path: &str) -> Arc<str> {
        SCRATCH.with(|s| {
            let mut t = s.borrow_mut();
            t.clear();
            template_into(path, &mut t);
            self.lookup(&t)
        })
    }

    fn lookup(&self, t: &str) -> Arc<str> {
        if let Some(k) = self.known.read().unwrap_or_else(|p| p.into_inner()).get(t) {
            return k.clone();
        }
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = known.get(t) {
            return k.clone();
        }
        if known.len() >= self.max {
            return self.other.clone();
        }
        let k: Arc<str> = Arc::from(t);
        known.insert(k.clone());
        k
    }

    /// Known templates, sorted.
    pub fn list(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|k| k.to_string())
            .collect();
        v.sort();
        v
    }
}

/// Collapses id-like segments to `{id}`; keeps at most 8 segments.
pub fn template_of(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    template_into(path, &mut out);
    out
}

/// [`template_of`] into `out`: the segments after the first `/`, each kept or collapsed.
fn template_into(path: &str, out: &mut String) {
    let Some(first) = path.bytes().position(|c| c == b'/') else {
        out.push('/');
        return;
    };
    let mut rest = &path[first + 1..];
    for i in 0.. {
        if i == 8 {
            out.push_str("/...");
            break;
        }
        // Segments are short: a plain scan beats a memchr call.
        let end = rest.bytes().position(|c| c == b'/');
        let seg = &rest[..end.unwrap_or(rest.len())];
        if is_id(seg) {
            out.push_str("/{id}");
        } else {
            out.push('/');
            out.push_str(seg);
        }
        match end {
            Some(e) => rest = &rest[e + 1..],
            None => break,
        }
    }
}

/// Whether a path segment is an id: all digits; an email (`@` or `%40`); a UUID; 8+ hex
/// characters with a digit; a 16+ character token of letters, digits, `_` and `-` with a
/// digit; anything with a non-graphic byte; anything over 64 bytes. One pass over the bytes.
fn is_id(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b.len() > 64 {
        return true;
    }
    let (mut digits, mut hex, mut token, mut graphic) = (0usize, true, true, true);
    let mut at = false;
    for (i, &c) in b.iter().enumerate() {
        if c.is_ascii_digit() {
            digits += 1;
            continue;
        }
        hex &= c.is_ascii_hexdigit();
        token &= c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
        graphic &= c.is_ascii_graphic();
        at |= c == b'@' || (c == b'%' && b[i + 1..].starts_with(b"40"));
    }
    if digits == b.len() || at || !graphic {
        return true;
    }
    if b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (*c == b'-') && (*c == b'-' || c.is_ascii_hexdigit())
        })
    {
        return true;
    }
    digits > 0 && ((b.len() >= 8 && hex) || (b.len() >= 16 && token))
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
        assert_eq!(template_of(""), "/");
        assert_eq!(template_of("/a/b/c/d/e/f/g/h/i/j"), "/a/b/c/d/e/f/g/h/...");
        assert_eq!(template_of("/x/caf\u{e9}"), "/x/{id}");
        assert_eq!(template_of(&format!("/x/{}", "a".repeat(65))), "/x/{id}");
        assert_eq!(template_of("/x/a%4"), "/x/a%4");
        assert_eq!(template_of("/x/abcdefgh"), "/x/abcdefgh");
        assert_eq!(template_of("/x/abcdefghijklmnopq"), "/x/abcdefghijklmnopq");
        assert_eq!(template_of("/contacts//7"), "/contacts//{id}");
    }

    /// The byte scan splits exactly as `str::split('/')` does, over paths made of the pieces
    /// that matter (separators, ids, words, empty segments, non-ASCII).
    #[test]
    fn scan_matches_split() {
        fn by_split(path: &str) -> String {
            let mut out = String::new();
            for (i, seg) in path.split('/').skip(1).enumerate() {
                if i == 8 {
                    out.push_str("/...");
                    break;
                }
                out.push('/');
                out.push_str(if is_id(seg) { "{id}" } else { seg });
            }
            if out.is_empty() {
                out.push('/');
            }
            out
        }
        let pieces = [
            "/",
            "/",
            "a",
            "42",
            "contacts",
            "x@y",
            "\u{e9}",
            "",
            "*",
            "deadbeef42",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut path = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut r = seed;
            for _ in 0..(r % 14) {
                r /= 14;
                path.push_str(pieces[(r % pieces.len() as u64) as usize]);
                r = r.rotate_left(9) ^ seed;
            }
            assert_eq!(template_of(&path), by_split(&path), "{path:?}");
        }
    }

    #[test]
    fn bounded() {
        let t = RouteTable::new(2);
        assert_eq!(&*t.template("/a"), "/a");
        assert_eq!(&*t.template("/b/1"), "/b/{id}");
        assert_eq!(&*t.template("/c"), "_other");
        assert_eq!(&*t.template("/b/2"), "/b/{id}");
        // A known template is shared, not copied.
        assert!(Arc::ptr_eq(&t.template("/b/3"), &t.template("/b/4")));
        assert_eq!(t.list(), vec!["/a".to_string(), "/b/{id}".to_string()]);
    }
}
