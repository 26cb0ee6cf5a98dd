//! Shared helpers of the binary's black-box tests: run the real `vigil` binary with a config.
#![allow(dead_code)]

pub mod obs;
pub mod receivers;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `vigil run` child process, killed on drop.
pub struct Vigil {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Vigil {
    /// Write `config` to a temp dir and start `vigil run` on it.
    pub fn start(config: &str, env: &[(&str, &str)]) -> Vigil {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigil.toml");
        std::fs::write(&path, config).unwrap();
        Vigil::start_at(dir, path, env)
    }

    pub fn start_at(dir: tempfile::TempDir, config: PathBuf, env: &[(&str, &str)]) -> Vigil {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
        cmd.arg("run")
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn vigil");
        Vigil { child, dir, config }
    }

    /// As [`Vigil::start`] with `RUST_LOG` = `rust_log`, stdout and stderr written to
    /// `vigil.log` in its folder (read it with [`Vigil::log`]).
    pub fn start_logged(config: &str, rust_log: &str) -> Vigil {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigil.toml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("vigil.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("run")
            .arg("--config")
            .arg(&path)
            .current_dir(dir.path())
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn vigil");
        Vigil {
            child,
            dir,
            config: path,
        }
    }

    /// What a [`Vigil::start_logged`] process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vigil.log")).unwrap_or_default()
    }

    /// Restart the same config after the process was killed.
    pub fn restart(&mut self, env: &[(&str, &str)]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.child = cmd.spawn().expect("respawn vigil");
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc_kill(self.child.id() as i32, 15) };
        self.child.wait().unwrap()
    }
}

impl Drop for Vigil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// A client straight to PostgreSQL (or through the pg proxy), its connection task spawned.
pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    c
}

/// Wait until `http://127.0.0.1:{port}{path}` answers (any status).
pub async fn wait_http(port: u16, path: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await
            .is_ok()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "vigil did not come up on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
