//! PostgreSQL md5 authentication: `"md5" + md5(md5(password + user) + salt)`.

use md5::{Digest, Md5};

fn md5_hex(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// The stored form: `md5` + md5(password + user).
pub fn stored_hash(user: &str, password: &str) -> String {
    format!("md5{}", md5_hex(&[password.as_bytes(), user.as_bytes()]))
}

/// The response to an md5 challenge given the stored form.
pub fn response_from_stored(stored: &str, salt: &[u8; 4]) -> String {
    let inner = stored.strip_prefix("md5").unwrap_or(stored);
    format!("md5{}", md5_hex(&[inner.as_bytes(), salt]))
}

/// The response to an md5 challenge given the plain password.
pub fn response(user: &str, password: &str, salt: &[u8; 4]) -> String {
    response_from_stored(&stored_hash(user, password), salt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // SELECT 'md5' || md5('secret' || 'app');
        assert_eq!(
            stored_hash("app", "secret"),
            "md56a422f785c9e20873908ce25d1736ae2"
        );
        let r = response("app", "secret", &[1, 2, 3, 4]);
        assert_eq!(r, "md5911f527656472583a006e7727877b33e");
        assert_ne!(r, response("app", "other", &[1, 2, 3, 4]));
    }
}
