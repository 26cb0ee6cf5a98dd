//! SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel binding, both roles.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub const MECHANISM: &str = "SCRAM-SHA-256";
const DEFAULT_ITERATIONS: u32 = 4096;

/// Why a SCRAM exchange failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message")]
    Malformed,
    #[error("SCRAM nonce mismatch")]
    Nonce,
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("password authentication failed")]
    BadProof,
    #[error("server signature mismatch")]
    BadServerSignature,
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("hmac takes any key length");
    m.update(msg);
    m.finalize().into_bytes().into()
}

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Hi() = PBKDF2-HMAC-SHA-256 with one output block.
pub fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    out
}

/// A stored SCRAM secret, as in `pg_authid.rolpassword`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramSecret(***)")
    }
}

impl ScramSecret {
    /// Parse `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(s: &str) -> Option<ScramSecret> {
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iter, salt) = iter_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let iterations: u32 = iter.parse().ok().filter(|i| *i > 0)?;
        let salt = B64.decode(salt).ok()?;
        let stored_key: [u8; 32] = B64.decode(stored).ok()?.try_into().ok()?;
        let server_key: [u8; 32] = B64.decode(server).ok()?.try_into().ok()?;
        Some(ScramSecret {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// Derive a secret from a plain password with a random salt.
    pub fn from_password(password: &str) -> ScramSecret {
        let salt: [u8; 16] = rand::random();
        Self::from_password_salt(password, &salt, DEFAULT_ITERATIONS)
    }

    pub fn from_password_salt(password: &str, salt: &[u8], iterations: u32) -> ScramSecret {
        let salted = salted_password(password, salt, iterations);
        ScramSecret {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&hmac(&salted, b"Client Key")),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    pub fn encode(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

fn attr(part: &str, key: char) -> Option<&str> {
    let mut c = part.chars();
    (c.next()? == key && c.next()? == '=').then(|| &part[2..])
}

fn nonce() -> String {
    let raw: [u8; 18] = rand::random();
    B64.encode(raw)
}

/// Server role: verifies a client against a [`ScramSecret`].
pub struct ScramServer {
    secret: ScramSecret,
    client_first_bare: String,
    server_first: String,
    gs2_header: String,
    nonce: String,
}

impl ScramServer {
    /// Handle the client-first message; returns the server-first message to send.
    pub fn start(
        secret: ScramSecret,
        client_first: &[u8],
    ) -> Result<(ScramServer, String), ScramError> {
        let msg = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed)?;
        // gs2-header: cbind-flag "," [authzid] ","
        let (flag, rest) = msg.split_once(',').ok_or(ScramError::Malformed)?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed),
        }
        let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed)?;
        let gs2_header = format!("{flag},{authzid},");
        let mut parts = bare.split(',');
        let first = parts.next().ok_or(ScramError::Malformed)?;
        if first.starts_with("m=") || attr(first, 'n').is_none() {
            return Err(ScramError::Malformed);
        }
        let client_nonce = parts
            .next()
            .and_then(|p| attr(p, 'r'))
            .filter(|n| !n.is_empty())
            .ok_or(ScramError::Malformed)?;
        let nonce = format!("{client_nonce}{}", self::nonce());
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&secret.salt),
            secret.iterations
        );
        Ok((
            ScramServer {
                secret,
                client_first_bare: bare.to_owned(),
                server_first: server_first.clone(),
                gs2_header,
                nonce,
            },
            server_first,
        ))
    }

    /// Handle the client-final message; returns the server-final message on success.
    pub fn finish(self, client_final: &[u8]) -> Result<String, ScramError> {
        let msg = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed)?;
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(ScramError::Malformed)?;
        let mut parts = without_proof.split(',');
        let cbind = parts
            .next()
            .and_then(|p| attr(p, 'c'))
            .ok_or(ScramError::Malformed)?;
        if B64.decode(cbind).map_err(|_| ScramError::Malformed)? != self.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBinding);
        }
        let nonce = parts
            .next()
            .and_then(|p| attr(p, 'r'))
            .ok_or(ScramError::Malformed)?;
        if nonce != self.nonce {
            return Err(ScramError::Nonce);
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed)?;
        if proof.len() != 32 {
            return Err(ScramError::Malformed);
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = hmac(&self.secret.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(a, b)| a ^ b).collect();
        if !super::ct_eq(&sha256(&client_key), &self.secret.stored_key) {
            return Err(ScramError::BadProof);
        }
        let server_sig = hmac(&self.secret.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_sig)))
    }
}

/// Client role: authenticates Vigil to PostgreSQL with a plain password.
pub struct ScramClient {
    password: String,
    client_nonce: String,
    state: Option<([u8; 32], String)>,
}

impl ScramClient {
    /// Returns the client and the client-first message.
    pub fn new(password: &str) -> (ScramClient, String) {
        let client_nonce = nonce();
        let first = format!("n,,n=,r={client_nonce}");
        (
            ScramClient {
                password: password.to_owned(),
                client_nonce,
                state: None,
            },
            first,
        )
    }

    /// Handle server-first; returns client-final.
    pub fn step(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        let msg = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed)?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for p in msg.split(',') {
            if let Some(v) = attr(p, 'r') {
                nonce = Some(v);
            } else if let Some(v) = attr(p, 's') {
                salt = Some(B64.decode(v).map_err(|_| ScramError::Malformed)?);
            } else if let Some(v) = attr(p, 'i') {
                iterations = Some(v.parse::<u32>().map_err(|_| ScramError::Malformed)?);
            }
        }
        let (nonce, salt, iterations) = match (nonce, salt, iterations) {
            (Some(n), Some(s), Some(i)) if i > 0 => (n, s, i),
            _ => return Err(ScramError::Malformed),
        };
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(ScramError::Nonce);
        }
        let salted = salted_password(&self.password, &salt, iterations);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("n=,r={},{msg},{without_proof}", self.client_nonce);
        let client_key = hmac(&salted, b"Client Key");
        let signature = hmac(&sha256(&client_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        self.state = Some((hmac(&server_key, auth_message.as_bytes()), String::new()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Verify server-final.
    pub fn finish(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let msg = std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed)?;
        let v = msg
            .split(',')
            .find_map(|p| attr(p, 'v'))
            .ok_or(ScramError::BadServerSignature)?;
        let got = B64.decode(v).map_err(|_| ScramError::Malformed)?;
        let (expected, _) = self.state.as_ref().ok_or(ScramError::Malformed)?;
        if super::ct_eq(&got, expected) {
            Ok(())
        } else {
            Err(ScramError::BadServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_server_agree() {
        let secret = ScramSecret::from_password("pencil");
        let (mut client, first) = ScramClient::new("pencil");
        let (server, server_first) = ScramServer::start(secret.clone(), first.as_bytes()).unwrap();
        let client_final = client.step(server_first.as_bytes()).unwrap();
        let server_final = server.finish(client_final.as_bytes()).unwrap();
        client.finish(server_final.as_bytes()).unwrap();
    }

    #[test]
    fn wrong_password_is_rejected() {
        let secret = ScramSecret::from_password("pencil");
        let (mut client, first) = ScramClient::new("crayon");
        let (server, server_first) = ScramServer::start(secret, first.as_bytes()).unwrap();
        let client_final = client.step(server_first.as_bytes()).unwrap();
        assert_eq!(
            server.finish(client_final.as_bytes()),
            Err(ScramError::BadProof)
        );
    }

    #[test]
    fn rfc7677_vector() {
        // RFC 7677 section 3: user "user", password "pencil".
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = salted_password("pencil", &salt, 4096);
        let client_key = hmac(&salted, b"Client Key");
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = hmac(&sha256(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(sig).map(|(a, b)| a ^ b).collect();
        assert_eq!(
            B64.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let server_sig = hmac(&hmac(&salted, b"Server Key"), auth.as_bytes());
        assert_eq!(
            B64.encode(server_sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn secret_roundtrip() {
        let s = ScramSecret::from_password("x");
        assert_eq!(ScramSecret::parse(&s.encode()).unwrap(), s);
        assert!(ScramSecret::parse("md5abc").is_none());
    }
}
