//! `vigil run` reloads its configuration on SIGHUP and when the file changes, without dropping
//! connected clients; a broken file changes nothing.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Vigil, wait_http};
use vigil_testkit::{PgServer, free_port};

fn config(admin: u16, pg: u16, databases: &[(&str, &str)], pool_size: u32) -> String {
    let mut text = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[pg]\nlisten = \"127.0.0.1:{pg}\"\n\
         auth_type = \"trust\"\npool_size = {pool_size}\nmin_idle = 0\n\n\
         [[pg.users]]\nname = \"postgres\"\n"
    );
    for (name, url) in databases {
        text.push_str(&format!(
            "\n[[pg.databases]]\nname = \"{name}\"\nurl = \"{url}\"\n"
        ));
    }
    text
}

/// One `psql -At -c` through the proxy: the trimmed output, or the error text.
fn query(server: &PgServer, port: u16, db: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(server.bin_dir().join("psql"))
        .args(["-X", "-At", "-h", "127.0.0.1", "-U", "postgres", "-v"])
        .arg("ON_ERROR_STOP=1")
        .arg("-p")
        .arg(port.to_string())
        .arg("-d")
        .arg(db)
        .arg("-c")
        .arg(sql)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("run psql");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Poll `query` until `ok` accepts its result (10 s at most).
fn eventually(
    what: &str,
    mut probe: impl FnMut() -> Result<String, String>,
    ok: impl Fn(&Result<String, String>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = probe();
        if ok(&got) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: last result {got:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A psql session kept open across reloads.
struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Session {
    fn open(server: &PgServer, port: u16, db: &str) -> Session {
        let mut child = Command::new(server.bin_dir().join("psql"))
            .args(["-X", "-At", "-h", "127.0.0.1", "-U", "postgres"])
            .arg("-p")
            .arg(port.to_string())
            .arg("-d")
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn psql");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Session {
            child,
            stdin,
            stdout,
        }
    }

    /// Send one statement and read its one-line answer.
    fn ask(&mut self, sql: &str) -> String {
        writeln!(self.stdin, "{sql}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hup(vigil: &Vigil) {
    let status = Command::new("kill")
        .args(["-HUP", &vigil.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_file_changes_reload_databases_without_dropping_clients() {
    let server = PgServer::shared();
    let one = server.create_database().unwrap();
    let two = server.create_database().unwrap();
    let (admin, pg) = (free_port(), free_port());

    let mut vigil = Vigil::start(&config(admin, pg, &[("one", &one.url)], 4), &[]);
    wait_http(admin, "/readyz").await;
    let path = vigil.config.clone();

    let mut session = Session::open(server, pg, "one");
    assert_eq!(session.ask("select current_database();"), one.name);
    let unknown = query(server, pg, "two", "select 1").unwrap_err();
    assert!(unknown.contains("two"), "{unknown}");

    // SIGHUP after adding a database: it is served, the open session keeps working.
    std::fs::write(
        &path,
        config(admin, pg, &[("one", &one.url), ("two", &two.url)], 4),
    )
    .unwrap();
    hup(&vigil);
    eventually(
        "database `two` after SIGHUP",
        || query(server, pg, "two", "select current_database()"),
        |r| r.as_deref() == Ok(two.name.as_str()),
    );
    assert_eq!(session.ask("select 'still here';"), "still here");

    // A broken file (and SIGHUP) changes nothing: both databases keep working.
    std::fs::write(
        &path,
        config(admin, pg, &[("one", &one.url), ("two", &two.url)], 0),
    )
    .unwrap();
    hup(&vigil);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(vigil.child.try_wait().unwrap().is_none(), "vigil exited");
    assert_eq!(
        query(server, pg, "two", "select current_database()").as_deref(),
        Ok(two.name.as_str())
    );
    assert_eq!(
        session.ask("select 'after broken file';"),
        "after broken file"
    );

    // No signal at all: the file watcher notices the change and drops `two`.
    std::fs::write(&path, config(admin, pg, &[("one", &one.url)], 4)).unwrap();
    eventually(
        "database `two` removed by the file watcher",
        || query(server, pg, "two", "select 1"),
        |r| r.is_err(),
    );
    assert_eq!(session.ask("select 'after watcher';"), "after watcher");
    assert_eq!(
        query(server, pg, "one", "select current_database()").as_deref(),
        Ok(one.name.as_str())
    );

    drop(session);
    let status = vigil.terminate();
    assert!(status.success(), "vigil exited with {status}");
}
