//! A throwaway Redis: `redis-server` on a free port, no persistence, tied to the test process.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::Error;
use crate::process::{self, spawn_tied};

/// A running (or stopped) throwaway Redis server.
pub struct RedisServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Mutex<Option<Child>>,
    next_prefix: AtomicU32,
}

impl RedisServer {
    /// The server shared by every test in this test binary. Tests that stop it must use
    /// [`RedisServer::start_new`].
    pub fn shared() -> &'static RedisServer {
        static SHARED: OnceLock<RedisServer> = OnceLock::new();
        SHARED.get_or_init(|| RedisServer::start_new().unwrap_or_else(|e| panic!("{e}")))
    }

    /// A new private server.
    pub fn start_new() -> Result<RedisServer, Error> {
        process::sweep_stale("vigil-test-redis");
        let bin = which("redis-server").ok_or(Error::Missing {
            binary: "redis-server",
            packages: "redis-server",
        })?;
        let dir =
            process::temp_dir("vigil-test-redis").map_err(|e| Error::io("create temp dir", e))?;
        let mut last = None;
        for _ in 0..5 {
            let server = RedisServer {
                bin: bin.clone(),
                dir: dir.clone(),
                port: process::free_port(),
                child: Mutex::new(None),
                next_prefix: AtomicU32::new(0),
            };
            match server.start() {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Failed {
            what: "redis-server".into(),
            detail: "could not start".into(),
        }))
    }

    /// Start (again) on the same port; waits until it answers PING.
    pub fn start(&self) -> Result<(), Error> {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_some() {
            return Ok(());
        }
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = spawn_tied(cmd).map_err(|e| Error::io("spawn redis-server", e))?;
        process::register_pid(child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                process::unregister_pid(child.id());
                return Err(Error::Failed {
                    what: "redis-server".into(),
                    detail: format!("exited with {status} (port {} taken?)", self.port),
                });
            }
            if ping(self.port) {
                break;
            }
            if Instant::now() > deadline {
                process::terminate(child.id() as i32, libc::SIGKILL, Duration::from_secs(1));
                process::unregister_pid(child.id());
                return Err(Error::Failed {
                    what: "redis-server".into(),
                    detail: "no PONG after 10 s".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        *guard = Some(child);
        Ok(())
    }

    /// Stop the server (its data is gone: no persistence).
    pub fn stop(&self) {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(child) = guard.take() {
            process::terminate(child.id() as i32, libc::SIGKILL, Duration::from_secs(5));
            process::unregister_pid(child.id());
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A key prefix unique to one test, so tests sharing the server never see each other's keys.
    pub fn prefix(&self) -> String {
        let n = self.next_prefix.fetch_add(1, Ordering::Relaxed);
        format!("t{}:{n}:", std::process::id())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
        process::unregister_dir(&self.dir);
    }
}

fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// Looks `name` up on `PATH` (and the sbin folders, where Debian puts some servers).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin"])
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}
