//! Prepared statements in transaction mode.
//!
//! A client's named statement is stored per client ([`ClientStatements`]) and renamed
//! server-side to a name derived from its text and parameter types (`vigil_s_<128-bit hash>`),
//! so the same statement prepared by many clients is prepared once per server connection.
//! Each server connection remembers what it has prepared ([`ServerStatements`]), bounded, least
//! recently used evicted (with a Close sent before the statement that replaces it).

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::protocol::extended::Parse;

/// One statement definition as the client prepared it.
#[derive(Debug)]
pub struct StatementDef {
    /// Server-side name.
    pub server_name: Arc<str>,
    pub query: Arc<str>,
    /// The Parse frame to send upstream (already renamed).
    pub parse_frame: Bytes,
}

impl StatementDef {
    pub fn new(parse: &Parse) -> StatementDef {
        let mut h = Sha256::new();
        h.update(parse.query.as_bytes());
        h.update([0]);
        for t in &parse.param_types {
            h.update(t.to_be_bytes());
        }
        let digest = h.finalize();
        let server_name: Arc<str> = format!("vigil_s_{}", hex::encode(&digest[..16])).into();
        let parse_frame = Parse {
            name: server_name.to_string(),
            query: parse.query.clone(),
            param_types: parse.param_types.clone(),
        }
        .encode();
        StatementDef {
            server_name,
            query: parse.query.as_str().into(),
            parse_frame,
        }
    }
}

/// A client's named statements (client name -> definition).
#[derive(Debug, Default)]
pub struct ClientStatements {
    map: HashMap<String, Arc<StatementDef>>,
}

impl ClientStatements {
    pub fn get(&self, name: &str) -> Option<&Arc<StatementDef>> {
        self.map.get(name)
    }
    pub fn insert(&mut self, name: String, def: Arc<StatementDef>) {
        self.map.insert(name, def);
    }
    pub fn remove(&mut self, name: &str) -> bool {
        self.map.remove(name).is_some()
    }
    pub fn clear(&mut self) {
        self.map.clear();
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Statements prepared on one server connection, LRU-bounded.
#[derive(Debug)]
pub struct ServerStatements {
    used: HashMap<Arc<str>, u64>,
    tick: u64,
    max: usize,
}

impl ServerStatements {
    pub fn new(max: usize) -> ServerStatements {
        ServerStatements {
            used: HashMap::new(),
            tick: 0,
            max: max.max(1),
        }
    }
    /// Whether `name` is prepared; marks it as recently used.
    pub fn touch(&mut self, name: &str) -> bool {
        self.tick += 1;
        match self.used.get_mut(name) {
            Some(t) => {
                *t = self.tick;
                true
            }
            None => false,
        }
    }
    /// Record `name` as prepared; returns the evicted statement to Close first, if any.
    pub fn insert(&mut self, name: Arc<str>) -> Option<Arc<str>> {
        self.tick += 1;
        let evicted = if self.used.len() >= self.max && !self.used.contains_key(&name) {
            let victim = self
                .used
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(n, _)| n.clone());
            if let Some(v) = &victim {
                self.used.remove(v);
            }
            victim
        } else {
            None
        };
        self.used.insert(name, self.tick);
        evicted
    }
    pub fn remove(&mut self, name: &str) {
        self.used.remove(name);
    }
    pub fn clear(&mut self) {
        self.used.clear();
    }
    pub fn len(&self) -> usize {
        self.used.len()
    }
    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, q: &str, types: Vec<u32>) -> Parse {
        Parse {
            name: name.into(),
            query: q.into(),
            param_types: types,
        }
    }

    #[test]
    fn same_text_same_server_name() {
        let a = StatementDef::new(&parse("a", "SELECT $1", vec![23]));
        let b = StatementDef::new(&parse("b", "SELECT $1", vec![23]));
        let c = StatementDef::new(&parse("a", "SELECT $1", vec![25]));
        assert_eq!(a.server_name, b.server_name);
        assert_ne!(a.server_name, c.server_name);
        assert!(a.server_name.len() < 64);
        let p = Parse::decode(&a.parse_frame[5..]).unwrap();
        assert_eq!(p.name, &*a.server_name);
    }

    #[test]
    fn lru_eviction() {
        let mut s = ServerStatements::new(2);
        assert_eq!(s.insert("a".into()), None);
        assert_eq!(s.insert("b".into()), None);
        assert!(s.touch("a"));
        assert_eq!(s.insert("c".into()).as_deref(), Some("b"));
        assert!(!s.touch("b"));
        assert!(s.touch("a") && s.touch("c"));
        assert_eq!(s.len(), 2);
    }
}
