//! The harness itself: servers start, serve, stop and come back.

use vigil_testkit::{PgServer, RedisServer};

#[test]
fn postgres_starts_serves_stops_and_restarts() {
    let pg = PgServer::start_new().expect("start postgres");
    let db = pg.create_database().unwrap();
    pg.psql(
        &db.name,
        "CREATE TABLE t (x int); INSERT INTO t VALUES (42)",
    )
    .unwrap();
    assert_eq!(pg.psql(&db.name, "SELECT x FROM t").unwrap().trim(), "42");
    pg.stop();
    assert!(!pg.is_running());
    assert!(pg.psql(&db.name, "SELECT 1").is_err());
    pg.start().unwrap();
    assert_eq!(pg.psql(&db.name, "SELECT x FROM t").unwrap().trim(), "42");
    // The extension the fingerprint tests compare against is loadable.
    pg.psql(&db.name, "CREATE EXTENSION pg_stat_statements")
        .unwrap();
}

#[test]
fn shared_postgres_gives_each_test_its_own_database() {
    let pg = PgServer::shared();
    let a = pg.create_database().unwrap();
    let b = pg.create_database().unwrap();
    assert_ne!(a.name, b.name);
    pg.psql(&a.name, "CREATE TABLE only_in_a (x int)").unwrap();
    assert!(pg.psql(&b.name, "SELECT * FROM only_in_a").is_err());
}

#[test]
fn redis_starts_serves_stops_and_restarts() {
    use std::io::{Read, Write};
    let redis = RedisServer::start_new().expect("start redis");
    let ping = |port| -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        s.write_all(b"PING\r\n").unwrap();
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    };
    assert!(ping(redis.port()));
    assert_ne!(redis.prefix(), redis.prefix());
    redis.stop();
    assert!(!ping(redis.port()));
    redis.start().unwrap();
    assert!(ping(redis.port()));
}
