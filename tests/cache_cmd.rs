//! `vigil cache flush` and `vigil cache install` end to end, with the real binary: a `vigil run`
//! with the pg proxy and a `[cache]` in front of a throwaway PostgreSQL (and Redis), and the
//! commands run as an operator would.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Vigil, wait_http};
use vigil_testkit::{PgServer, RedisServer, TestDb, free_port};

const RULES: &str = "rules:\n  - table: t1\n    ttl: 600\n  - table: t2\n    ttl: 600\n";

struct Setup {
    vigil: Vigil,
    admin: u16,
    pg: u16,
}

fn config(pg: &PgServer, db: &TestDb, admin: u16, listen: u16, cache: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"
[pg]
listen = "127.0.0.1:{listen}"
auth_type = "trust"
pool_size = 2
min_idle = 0
[[pg.databases]]
name = "crm"
url = "postgres://postgres@127.0.0.1:{port}/{name}"
[cache]
rules = "cache.yaml"
{cache}
"#,
        port = pg.port(),
        name = db.name,
    )
}

fn test_db(pg: &PgServer) -> TestDb {
    let db = pg.create_database().unwrap();
    pg.psql(
        &db.name,
        "CREATE TABLE t1 (k int PRIMARY KEY, v int NOT NULL);
         CREATE TABLE t2 (k int PRIMARY KEY, v int NOT NULL);
         INSERT INTO t1 VALUES (1, 1); INSERT INTO t2 VALUES (1, 10);",
    )
    .unwrap();
    db
}

async fn start(pg: &PgServer, db: &TestDb, cache: &str) -> Setup {
    let (admin, listen) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cache.yaml"), RULES).unwrap();
    let path = dir.path().join("vigil.toml");
    std::fs::write(&path, config(pg, db, admin, listen, cache)).unwrap();
    let vigil = Vigil::start_at(dir, path, &[]);
    wait_http(admin, "/healthz").await;
    Setup {
        vigil,
        admin,
        pg: listen,
    }
}

/// `vigil cache <args> --config <config>`: (success, stdout + stderr).
fn vigil_cache(config: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("cache")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run vigil cache");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Served {
    Hit,
    Miss,
    Other,
}

impl Setup {
    async fn client(&self) -> tokio_postgres::Client {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match tokio_postgres::connect(
                &format!("host=127.0.0.1 port={} user=postgres dbname=crm", self.pg),
                tokio_postgres::NoTls,
            )
            .await
            {
                Ok((c, conn)) => {
                    tokio::spawn(conn);
                    return c;
                }
                Err(e) => assert!(Instant::now() < deadline, "pg proxy: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn counters(&self) -> (u64, u64) {
        let s: serde_json::Value =
            reqwest::get(format!("http://127.0.0.1:{}/api/cache", self.admin))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        (s["hits"].as_u64().unwrap(), s["misses"].as_u64().unwrap())
    }

    /// Read `v` of `table` through Vigil: the value and how the cache served it.
    async fn read(&self, c: &tokio_postgres::Client, table: &str) -> (i32, Served) {
        let before = self.counters().await;
        let row = c
            .query_one(&format!("SELECT v FROM {table} WHERE k = 1"), &[])
            .await
            .unwrap();
        let after = self.counters().await;
        let served = match (after.0 - before.0, after.1 - before.1) {
            (1, 0) => Served::Hit,
            (0, 1) => Served::Miss,
            _ => Served::Other,
        };
        (row.get(0), served)
    }

    /// Read until `table` is served from the cache (the catalog loads on first use).
    async fn until_hit(&self, c: &tokio_postgres::Client, table: &str) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (v, served) = self.read(c, table).await;
            if served == Served::Hit {
                return v;
            }
            assert!(Instant::now() < deadline, "{table} never became a hit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Both tables cached; `flush --table t1` misses t1 only; `flush` misses both.
async fn flush_by_table_then_everything(s: &Setup) {
    let c = s.client().await;
    assert_eq!(s.until_hit(&c, "t1").await, 1);
    assert_eq!(s.until_hit(&c, "t2").await, 10);
    assert_eq!(s.read(&c, "t1").await, (1, Served::Hit));

    let (ok, out) = vigil_cache(&s.vigil.config, &["flush", "--table", "t1"]);
    assert!(ok, "{out}");
    assert_eq!(s.read(&c, "t1").await, (1, Served::Miss), "{out}");
    assert_eq!(s.read(&c, "t2").await, (10, Served::Hit));
    assert_eq!(s.read(&c, "t1").await, (1, Served::Hit));

    let (ok, out) = vigil_cache(&s.vigil.config, &["flush", "--database", "crm"]);
    assert!(ok, "{out}");
    assert_eq!(s.read(&c, "t1").await, (1, Served::Miss), "{out}");
    assert_eq!(s.read(&c, "t2").await, (10, Served::Miss));

    let (ok, out) = vigil_cache(&s.vigil.config, &["flush"]);
    assert!(ok, "{out}");
    assert_eq!(s.read(&c, "t1").await, (1, Served::Miss), "{out}");
    assert_eq!(s.read(&c, "t2").await, (10, Served::Miss));
    assert_eq!(s.read(&c, "t2").await, (10, Served::Hit));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_through_redis_and_install_triggers() {
    let pg = PgServer::shared();
    let redis = RedisServer::shared();
    let db = test_db(pg);
    let s = start(
        pg,
        &db,
        &format!(
            "backend = \"redis\"\nurl = \"{}\"\nprefix = \"{}\"\nredis_timeout_ms = 50\n",
            redis.url(),
            redis.prefix()
        ),
    )
    .await;
    flush_by_table_then_everything(&s).await;
    let (ok, out) = vigil_cache(&s.vigil.config, &["flush", "--database", "nope"]);
    assert!(!ok && out.contains("no [pg] database named"), "{out}");

    // A write made directly in PostgreSQL (not through Vigil) is followed once the triggers
    // are installed.
    let c = s.client().await;
    assert_eq!(s.until_hit(&c, "t1").await, 1);
    let (ok, out) = vigil_cache(&s.vigil.config, &["install"]);
    assert!(ok, "{out}");
    assert!(out.contains("crm"), "{out}");
    let n: String = pg
        .psql(
            &db.name,
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'vigil_cache_notify'",
        )
        .unwrap();
    assert_eq!(n.trim(), "2", "a trigger on t1 and t2");
    assert_eq!(s.read(&c, "t1").await, (1, Served::Hit));
    pg.psql(&db.name, "UPDATE t1 SET v = 2 WHERE k = 1")
        .unwrap();
    let written = Instant::now();
    loop {
        let (v, _) = s.read(&c, "t1").await;
        if v == 2 {
            break;
        }
        assert!(
            written.elapsed() < Duration::from_secs(1),
            "the direct write was not visible through the cache within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Idempotent.
    let (ok, out) = vigil_cache(&s.vigil.config, &["install"]);
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_with_the_memory_backend_goes_through_the_admin_api() {
    let pg = PgServer::shared();
    let db = test_db(pg);
    let s = start(pg, &db, "backend = \"memory\"\n").await;
    flush_by_table_then_everything(&s).await;
}

#[test]
fn flush_with_redis_unreachable_fails_without_leaking_the_password() {
    let pg = PgServer::shared();
    let db = test_db(pg);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cache.yaml"), RULES).unwrap();
    let password = "s3cret-Redis-pw";
    let cfg = config(
        pg,
        &db,
        free_port(),
        free_port(),
        &format!(
            "backend = \"redis\"\nurl = \"redis://vigil:{password}@127.0.0.1:{}/0\"\n",
            free_port()
        ),
    );
    let path = dir.path().join("vigil.toml");
    std::fs::write(&path, cfg).unwrap();
    for args in [&["flush"][..], &["flush", "--table", "t1"][..]] {
        let t = Instant::now();
        let (ok, out) = vigil_cache(&path, args);
        assert!(!ok, "{out}");
        assert!(out.contains("cannot reach Redis at 127.0.0.1:"), "{out}");
        assert!(!out.contains(password), "the password leaked: {out}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }
}
