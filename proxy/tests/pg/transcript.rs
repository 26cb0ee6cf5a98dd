//! One differential case as a transcript: a SQL string run in the simple protocol, the extended
//! protocol with the unnamed statement, and a pipelined named statement (shared by
//! `pg_differential.rs` and `cache_differential.rs`; needs `mod harness` at the crate root).
#![allow(dead_code)]

use bytes::Bytes;
use vigil_proxy::pg::pinning::split_statements;
use vigil_proxy::pg::protocol::buf::Frame;
use vigil_proxy::pg::protocol::extended::{Execute, Parse, Target, sync};
use vigil_proxy::pg::protocol::simple;
use vigil_proxy::pg::upstream::ServerConn;

use crate::harness::transcript;

pub fn bind(portal: &str, stmt: &str) -> Bytes {
    Frame::new(b'B')
        .cstr(portal)
        .cstr(stmt)
        .i16(0)
        .i16(0)
        .i16(0)
        .finish()
}

pub fn parse(name: &str, sql: &str) -> Bytes {
    Parse {
        name: name.into(),
        query: sql.into(),
        param_types: vec![],
    }
    .encode()
}

/// The transcript of case `i` (`i` names the prepared statement).
pub async fn run_case(conn: &mut ServerConn, i: usize, sql: &str) -> Vec<String> {
    let mut out = vec!["-- simple".to_owned()];
    out.extend(transcript(conn, &[simple::query(sql)], 1).await);
    if split_statements(sql).len() == 1 {
        out.push("-- extended unnamed".into());
        let frames = [
            parse("", sql),
            bind("", ""),
            Target {
                kind: b'P',
                name: "",
            }
            .encode(b'D'),
            Execute {
                portal: "",
                max_rows: 0,
            }
            .encode(),
            sync(),
        ];
        out.extend(transcript(conn, &frames, 1).await);
        out.push("-- extended named, pipelined".into());
        let name = format!("case_{i}");
        let frames = [
            parse(&name, sql),
            Target {
                kind: b'S',
                name: &name,
            }
            .encode(b'D'),
            sync(),
            bind("", &name),
            Execute {
                portal: "",
                max_rows: 0,
            }
            .encode(),
            Target {
                kind: b'S',
                name: &name,
            }
            .encode(b'C'),
            sync(),
        ];
        out.extend(transcript(conn, &frames, 2).await);
    }
    out
}
