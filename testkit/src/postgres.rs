//! A throwaway PostgreSQL cluster: `initdb` into a temp dir (as the `postgres` user when the tests
//! run as root, since PostgreSQL refuses to run as root), then the `postmaster` as a tied child on a
//! free port with durability off.
//!
//! Authentication (`pg_hba.conf`), so proxy tests can exercise every upstream method:
//! - `postgres` (superuser) and members of `vigil_trust`: trust;
//! - members of `vigil_password`: cleartext `password`;
//! - everyone else: `md5` (which uses SCRAM-SHA-256 for roles whose secret is SCRAM, the default).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::Error;
use crate::process::{self, spawn_tied};

/// The superuser every cluster is created with (trust auth).
pub const SUPERUSER: &str = "postgres";

/// A running (or stopped) throwaway PostgreSQL server.
pub struct PgServer {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
    next_db: AtomicU32,
}

impl PgServer {
    /// The server shared by every test in this test binary, started on first use.
    /// Tests that stop the server must use [`PgServer::start_new`] instead.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(|| PgServer::start_new().unwrap_or_else(|e| panic!("{e}")))
    }

    /// A new private cluster (about a second to create).
    pub fn start_new() -> Result<PgServer, Error> {
        process::sweep_stale("vigil-test-pg");
        let bin = pg_bin_dir()?;
        let run_as = crate::unprivileged_user("postgres")?;
        let root =
            process::temp_dir("vigil-test-pg").map_err(|e| Error::io("create temp dir", e))?;
        let data = root.join("data");
        if let Some((uid, gid)) = run_as {
            chown(&root, uid, gid)?;
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        ]);
        as_user(&mut initdb, run_as);
        let out = run(initdb, "initdb")?;
        if !out.status.success() {
            return Err(Error::Failed {
                what: "initdb".into(),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        std::fs::write(data.join("pg_hba.conf"), HBA)
            .map_err(|e| Error::io("write pg_hba.conf", e))?;
        let conf = format!("{CONF}unix_socket_directories = '{}'\n", data.display());
        let mut f = std::fs::read_to_string(data.join("postgresql.conf"))
            .map_err(|e| Error::io("read postgresql.conf", e))?;
        f.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), f)
            .map_err(|e| Error::io("write postgresql.conf", e))?;

        // Retry on a port another process grabbed between our probe and the bind.
        let mut last = None;
        for _ in 0..5 {
            let server = PgServer {
                bin: bin.clone(),
                data: data.clone(),
                port: process::free_port(),
                run_as,
                child: Mutex::new(None),
                next_db: AtomicU32::new(0),
            };
            match server.start() {
                Ok(()) => {
                    server.bootstrap()?;
                    return Ok(server);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Failed {
            what: "postgres".into(),
            detail: "could not start".into(),
        }))
    }

    /// Start the postmaster (again) on the same port and data directory; waits until it accepts
    /// connections.
    pub fn start(&self) -> Result<(), Error> {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_some() {
            return Ok(());
        }
        let _ = std::fs::remove_file(self.data.join("postmaster.pid"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join("server.log"))
            .map_err(|e| Error::io("open server.log", e))?;
        let log2 = log.try_clone().map_err(|e| Error::io("dup log", e))?;
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-p")
            .arg(self.port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2);
        as_user(&mut cmd, self.run_as);
        let mut child = spawn_tied(cmd).map_err(|e| Error::io("spawn postgres", e))?;
        process::register_pid(child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                process::unregister_pid(child.id());
                return Err(Error::Failed {
                    what: "postgres".into(),
                    detail: format!("exited with {status}: {}", self.log_tail()),
                });
            }
            let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap_or_default();
            if pid.lines().nth(7).map(str::trim) == Some("ready")
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                process::terminate(child.id() as i32, libc::SIGKILL, Duration::from_secs(1));
                process::unregister_pid(child.id());
                return Err(Error::Failed {
                    what: "postgres".into(),
                    detail: format!("not ready after 30 s: {}", self.log_tail()),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        *guard = Some(child);
        Ok(())
    }

    /// Stop the server (fast shutdown: open connections are terminated).
    pub fn stop(&self) {
        self.halt(libc::SIGINT);
    }

    /// Kill the server as a crash would (immediate shutdown, no checkpoint).
    pub fn crash(&self) {
        self.halt(libc::SIGQUIT);
    }

    fn halt(&self, sig: i32) {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(child) = guard.take() {
            process::terminate(child.id() as i32, sig, Duration::from_secs(10));
            process::unregister_pid(child.id());
        }
    }

    pub fn is_running(&self) -> bool {
        self.child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The directory of the server binaries this cluster runs (also has `psql`, `pgbench`).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The data directory (holds `server.log`).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// A superuser URL for `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// A fresh, empty database for one test; dropped with the cluster.
    pub fn create_database(&self) -> Result<TestDb, Error> {
        let n = self.next_db.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}_{n}", std::process::id());
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(TestDb {
            url: self.url(&name),
            name,
            port: self.port,
        })
    }

    /// Run SQL with `psql` as the superuser; returns its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, Error> {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args([
            "-p",
            &self.port.to_string(),
            "-U",
            SUPERUSER,
            "-d",
            db,
            "-c",
            sql,
        ]);
        let out = run(cmd, "psql")?;
        if !out.status.success() {
            return Err(Error::Failed {
                what: format!("psql -c {sql:?}"),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn bootstrap(&self) -> Result<(), Error> {
        self.psql(
            "postgres",
            "CREATE ROLE vigil_trust NOLOGIN; CREATE ROLE vigil_password NOLOGIN;",
        )?;
        Ok(())
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.crash();
        if let Some(root) = self.data.parent() {
            let root = root.to_path_buf();
            let _ = std::fs::remove_dir_all(&root);
            process::unregister_dir(&root);
        }
    }
}

/// A database created for one test.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub name: String,
    /// Superuser URL for this database.
    pub url: String,
    pub port: u16,
}

const HBA: &str = "\
local all all trust
host all postgres 127.0.0.1/32 trust
host all +vigil_trust 127.0.0.1/32 trust
host all +vigil_password 127.0.0.1/32 password
host all all 127.0.0.1/32 md5
host all postgres ::1/128 trust
host all all ::1/128 md5
";

const CONF: &str = "
# vigil-testkit: throwaway cluster, durability off
listen_addresses = '127.0.0.1'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
dynamic_shared_memory_type = mmap
shared_buffers = 64MB
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
compute_query_id = on
password_encryption = 'scram-sha-256'
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
log_min_messages = warning
";

/// Finds the server binaries: `$VIGIL_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`.
pub fn pg_bin_dir() -> Result<PathBuf, Error> {
    if let Ok(dir) = std::env::var("VIGIL_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p).ok_or(Error::Missing {
        binary: "initdb/postgres",
        packages: "postgresql postgresql-contrib",
    })
}

fn as_user(cmd: &mut Command, run_as: Option<(u32, u32)>) {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
        cmd.env("HOME", "/tmp");
    }
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), Error> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| Error::io("chown", e))
}

fn run(mut cmd: Command, what: &'static str) -> Result<Output, Error> {
    cmd.output().map_err(|e| Error::io(what, e))
}
