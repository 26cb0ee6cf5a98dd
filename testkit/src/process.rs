//! Child processes that never outlive the test binary.
//!
//! Servers are spawned from one long-lived thread with `PR_SET_PDEATHSIG(SIGKILL)`, so the kernel
//! kills them if the test process dies (the signal is tied to the spawning *thread*, which is why
//! test threads must not spawn them directly). On a normal exit an `atexit` hook stops every
//! registered server and removes its directory; that also runs after a test panicked.

use std::io;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

type Request = (Command, mpsc::Sender<io::Result<Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the testkit spawner thread");
        // SAFETY: registering a plain extern "C" function with no captured state.
        unsafe { libc::atexit(cleanup_at_exit) };
        Mutex::new(tx)
    })
}

/// Spawn `cmd` so that it dies with the test process.
pub(crate) fn spawn_tied(mut cmd: Command) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, tx))
        .map_err(|_| io::Error::other("testkit spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("testkit spawner thread is gone"))?
}

/// What the exit hook cleans: processes to stop and directories to remove.
#[derive(Default)]
struct Registry {
    pids: Vec<i32>,
    dirs: Vec<PathBuf>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

pub(crate) fn register_pid(pid: u32) {
    registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pids
        .push(pid as i32);
}

pub(crate) fn unregister_pid(pid: u32) {
    registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pids
        .retain(|p| *p != pid as i32);
}

pub(crate) fn register_dir(dir: PathBuf) {
    registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .dirs
        .push(dir);
}

pub(crate) fn unregister_dir(dir: &PathBuf) {
    registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .dirs
        .retain(|d| d != dir);
}

/// Send `sig`, then wait up to `grace` for the process to go, then SIGKILL.
pub(crate) fn terminate(pid: i32, sig: i32, grace: std::time::Duration) {
    // SAFETY: plain syscalls on a pid we spawned.
    unsafe {
        libc::kill(pid, sig);
        let deadline = std::time::Instant::now() + grace;
        loop {
            let mut status = 0;
            let r = libc::waitpid(pid, &mut status, libc::WNOHANG);
            if r == pid || r < 0 {
                return;
            }
            if std::time::Instant::now() >= deadline {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

extern "C" fn cleanup_at_exit() {
    let pids = match registry().lock() {
        Ok(mut r) => std::mem::take(&mut r.pids),
        Err(_) => return,
    };
    for pid in pids {
        // SIGQUIT: PostgreSQL's immediate shutdown; Redis exits on it too.
        terminate(pid, libc::SIGQUIT, std::time::Duration::from_secs(2));
    }
    let dirs = registry()
        .lock()
        .map(|r| r.dirs.clone())
        .unwrap_or_default();
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; callers retry if another process wins it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// A fresh directory under the system temp dir, removed at exit.
pub(crate) fn temp_dir(prefix: &str) -> io::Result<PathBuf> {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    register_dir(dir.clone());
    Ok(dir)
}

/// Remove directories left by test processes that no longer exist (killed before their exit hook).
pub(crate) fn sweep_stale(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&format!("{prefix}-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: signal 0 only checks for existence.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
