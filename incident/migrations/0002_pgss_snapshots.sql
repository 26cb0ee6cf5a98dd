-- pg_stat_statements snapshots (signals of class pgss_snapshot), portable across SQLite and
-- PostgreSQL like 0001. A snapshot's id is its signal id; texts are normalized (no constants)
-- and kept once per fingerprint.

CREATE TABLE pgss_snapshots (
    id TEXT PRIMARY KEY,
    database_name TEXT NOT NULL,
    taken_ms BIGINT NOT NULL,
    stats_reset_ms BIGINT,
    entry_count BIGINT NOT NULL
);
CREATE INDEX pgss_snapshots_database_time ON pgss_snapshots (database_name, taken_ms);
CREATE INDEX pgss_snapshots_time ON pgss_snapshots (taken_ms);

CREATE TABLE pgss_queries (
    fingerprint TEXT PRIMARY KEY,
    query TEXT NOT NULL
);

CREATE TABLE pgss_entries (
    snapshot_id TEXT NOT NULL,
    queryid TEXT NOT NULL,
    role_name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    calls BIGINT NOT NULL,
    total_seconds DOUBLE PRECISION NOT NULL,
    row_count BIGINT NOT NULL,
    PRIMARY KEY (snapshot_id, queryid, role_name)
);
CREATE INDEX pgss_entries_fingerprint ON pgss_entries (fingerprint);
