//! Hermetic test servers for Vigil's tests, started from the system binaries.
//!
//! - [`postgres`]: a throwaway PostgreSQL cluster ([`PgServer`]) on a free port, one per test binary
//!   ([`PgServer::shared`]) or private ([`PgServer::start_new`]) for fault tests that stop it;
//!   a fresh database per test ([`PgServer::create_database`]).
//! - [`redis`]: a throwaway Redis ([`RedisServer`]) with a key prefix per test.
//! - [`process`]: children tied to the test process (killed if it dies, cleaned at exit).
//!
//! When a binary is missing the error names the Debian packages to install.

pub mod postgres;
pub mod process;
pub mod redis;

pub use postgres::{PgServer, TestDb};
pub use process::free_port;
pub use redis::{RedisServer, which};

/// Why a test server could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "`{binary}` not found: install the Debian packages `{packages}` (apt-get install -y {packages})"
    )]
    Missing {
        binary: &'static str,
        packages: &'static str,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed: {detail}")]
    Failed { what: String, detail: String },
    #[error(
        "running as root and there is no unprivileged `{0}` user to run the server as (apt-get install -y postgresql creates it)"
    )]
    NoUser(&'static str),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// When running as root, the uid/gid of `user` to drop to; `None` when already unprivileged.
pub(crate) fn unprivileged_user(user: &'static str) -> Result<Option<(u32, u32)>, Error> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new(user).map_err(|_| Error::NoUser(user))?;
    // SAFETY: getpwnam returns a pointer to static storage or null; we copy the ids out at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(Error::NoUser(user));
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}
