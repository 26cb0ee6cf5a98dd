//! Authentication, both sides.
//!
//! - [`scram`]: SCRAM-SHA-256 (RFC 5802/7677) as server (clients -> Vigil) and as client
//!   (Vigil -> PostgreSQL); no channel binding.
//! - [`md5`]: PostgreSQL's md5 password hashing.
//! - [`client`]: the server side of a client's authentication exchange over the wire.

pub mod client;
pub mod md5;
pub mod scram;

/// What Vigil knows about a user's password when a client authenticates.
#[derive(Clone)]
pub enum Credential {
    /// Plain text (from the config).
    Plain(String),
    /// A SCRAM-SHA-256 secret (from the config or `auth_query`).
    Scram(scram::ScramSecret),
    /// An `md5...` hash (from `auth_query`).
    Md5Hash(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Plain(_) => "Plain(***)",
            Credential::Scram(_) => "Scram(***)",
            Credential::Md5Hash(_) => "Md5Hash(***)",
        })
    }
}

impl Credential {
    /// From a `pg_shadow.passwd` value.
    pub fn from_stored(passwd: &str) -> Option<Credential> {
        if let Some(s) = scram::ScramSecret::parse(passwd) {
            Some(Credential::Scram(s))
        } else if passwd.len() == 35 && passwd.starts_with("md5") {
            Some(Credential::Md5Hash(passwd.to_owned()))
        } else {
            None
        }
    }
}

/// Constant-time comparison.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
