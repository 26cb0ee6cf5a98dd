//! The cache key: SHA-256 over everything that can change a result's bytes.
//!
//! Protocol (simple/extended), database, role, every setting the client asked for (the
//! tracked GUCs incl. `search_path`, and `options=-c ...` settings), the exact statement text,
//! parameter types, the Bind's parameter formats, values and result formats, the Redis epoch,
//! the database-wide generation and the generation of each table read.

use sha2::{Digest, Sha256};

use super::store::Gens;

/// A 32-byte digest.
pub type Key = [u8; 32];

/// Inputs of one key (borrowed from the session).
pub struct KeyInput<'a> {
    pub extended: bool,
    pub database: &'a str,
    pub role: &'a str,
    pub settings: &'a [(String, String)],
    pub sql: &'a str,
    pub param_types: &'a [u32],
    /// Bind's formats + values + result formats, verbatim (extended only).
    pub bind: &'a [u8],
}

fn field(h: &mut Sha256, b: &[u8]) {
    h.update((b.len() as u64).to_le_bytes());
    h.update(b);
}

/// The key of `input` under generations `gens`.
pub fn key(input: &KeyInput<'_>, gens: &Gens) -> Key {
    let mut h = Sha256::new();
    h.update([u8::from(input.extended)]);
    field(&mut h, input.database.as_bytes());
    field(&mut h, input.role.as_bytes());
    let mut settings: Vec<&(String, String)> = input.settings.iter().collect();
    settings.sort_by_key(|(k, _)| k.to_ascii_lowercase());
    h.update((settings.len() as u64).to_le_bytes());
    for (k, v) in settings {
        field(&mut h, k.to_ascii_lowercase().as_bytes());
        field(&mut h, v.as_bytes());
    }
    field(&mut h, input.sql.as_bytes());
    h.update((input.param_types.len() as u64).to_le_bytes());
    for t in input.param_types {
        h.update(t.to_le_bytes());
    }
    field(&mut h, input.bind);
    h.update(gens.epoch.to_le_bytes());
    h.update(gens.global.to_le_bytes());
    h.update((gens.tables.len() as u64).to_le_bytes());
    for g in &gens.tables {
        h.update(g.to_le_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(sql: &'a str, settings: &'a [(String, String)], role: &'a str) -> KeyInput<'a> {
        KeyInput {
            extended: false,
            database: "crm",
            role,
            settings,
            sql,
            param_types: &[],
            bind: &[],
        }
    }

    #[test]
    fn every_input_changes_the_key() {
        let s1 = vec![("search_path".to_owned(), "a".to_owned())];
        let s2 = vec![("search_path".to_owned(), "b".to_owned())];
        let g = Gens {
            epoch: 1,
            global: 0,
            tables: vec![3],
        };
        let base = key(&input("select 1", &s1, "app"), &g);
        assert_eq!(base, key(&input("select 1", &s1, "app"), &g));
        assert_ne!(base, key(&input("select 2", &s1, "app"), &g));
        assert_ne!(base, key(&input("select 1", &s2, "app"), &g));
        assert_ne!(base, key(&input("select 1", &s1, "other"), &g));
        let g2 = Gens {
            tables: vec![4],
            ..g.clone()
        };
        assert_ne!(base, key(&input("select 1", &s1, "app"), &g2));
        let g3 = Gens { epoch: 2, ..g };
        assert_ne!(base, key(&input("select 1", &s1, "app"), &g3));
    }
}
