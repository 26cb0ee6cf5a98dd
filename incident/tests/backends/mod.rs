//! The store backends a suite runs against: SQLite in memory and PostgreSQL (vigil-testkit),
//! and `suite!` to run each named test function on both.
#![allow(dead_code)]

use vigil_incident::Store;
use vigil_incident::store::Backend;
use vigil_testkit::PgServer;

pub async fn sqlite_memory() -> Store {
    let s = Store::open("sqlite::memory:").await.unwrap();
    assert_eq!(s.backend(), Backend::Sqlite);
    s
}

pub async fn postgres() -> Store {
    let db = PgServer::shared().create_database().unwrap();
    let s = Store::open(&db.url).await.unwrap();
    assert_eq!(s.backend(), Backend::Postgres);
    s
}

/// `suite!(a, b)`: `on_sqlite::a`, `on_postgres::a`, ... each calling `a(store)`.
macro_rules! suite {
    ($($name:ident),*) => {
        mod on_sqlite { use super::*; $( #[tokio::test] async fn $name() { super::$name(backends::sqlite_memory().await).await } )* }
        mod on_postgres { use super::*; $( #[tokio::test] async fn $name() { super::$name(backends::postgres().await).await } )* }
    };
}
pub(crate) use suite;
