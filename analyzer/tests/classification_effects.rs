//! Classification beyond kind and tables: functions and volatility, locking clauses, session
//! effects (pinning), temp tables, catalogs, unparsable statements, ORM-generated SQL.

use vigil_analyzer::{
    FunctionVolatility, LockStrength, SessionEffect, StatementKind, Volatility, analyze,
    analyze_with,
};

use StatementKind::*;

#[test]
fn functions_and_volatility() {
    let a = analyze("SELECT nextval('contacts_id_seq')");
    assert_eq!(a.functions, vec!["nextval"]);
    assert_eq!(a.volatility, Volatility::Volatile);
    assert!(a.side_effects && a.may_write() && !a.is_cacheable());

    let a = analyze("SELECT * FROM activities WHERE created_at > now() - interval '1 day'");
    assert_eq!(a.volatility, Volatility::Stable);
    assert!(a.session_dependent && !a.is_cacheable() && !a.may_write());

    let a = analyze("SELECT random(), clock_timestamp(), gen_random_uuid()");
    assert_eq!(
        a.functions,
        vec!["random", "clock_timestamp", "gen_random_uuid"]
    );
    assert_eq!(a.volatility, Volatility::Volatile);

    let a = analyze("SELECT current_user, current_setting('x')");
    assert!(a.session_dependent);

    let a = analyze("SELECT company_id, count(*), max(amount) FROM deals GROUP BY company_id");
    assert_eq!(a.volatility, Volatility::Immutable);
    assert!(!a.unknown_functions && a.is_cacheable());

    // Unknown (user-defined) functions are not cacheable until the caller says otherwise.
    let a = analyze("SELECT crm.score(id) FROM contacts");
    assert_eq!(a.functions, vec!["score"]);
    assert!(a.unknown_functions && !a.is_cacheable());
    let lookup = FunctionVolatility::new().with("score", Volatility::Immutable);
    let a = analyze_with("SELECT crm.score(id) FROM contacts", Some(&lookup));
    assert!(!a.unknown_functions && a.is_cacheable());
    // The caller's table wins over the built-in list.
    let lookup = FunctionVolatility::new().with("lower", Volatility::Volatile);
    assert_eq!(
        analyze_with("SELECT lower(name) FROM contacts", Some(&lookup)).volatility,
        Volatility::Volatile
    );
    assert_eq!(Volatility::from_provolatile('s'), Some(Volatility::Stable));
}

#[test]
fn locking_clauses() {
    let cases: &[(&str, &[LockStrength])] = &[
        (
            "SELECT * FROM deals WHERE id = 1 FOR UPDATE",
            &[LockStrength::Update],
        ),
        (
            "SELECT * FROM deals WHERE id = 1 FOR NO KEY UPDATE NOWAIT",
            &[LockStrength::NoKeyUpdate],
        ),
        (
            "SELECT * FROM deals WHERE id = 1 FOR SHARE",
            &[LockStrength::Share],
        ),
        (
            "SELECT * FROM deals d, contacts c FOR KEY SHARE OF d FOR UPDATE OF c",
            &[LockStrength::KeyShare, LockStrength::Update],
        ),
        ("SELECT * FROM deals", &[]),
    ];
    for (sql, want) in cases {
        let a = analyze(sql);
        assert!(!a.parse_failed, "{sql}");
        assert_eq!(a.locking, *want, "{sql}");
        assert_eq!(a.is_cacheable(), want.is_empty(), "{sql}");
    }
}

#[test]
fn session_effects_for_pinning() {
    let cases: &[(&str, &[SessionEffect], bool)] = &[
        ("SET search_path TO crm", &[SessionEffect::Set], true),
        (
            "SET SESSION statement_timeout = 0",
            &[SessionEffect::Set],
            true,
        ),
        ("SET LOCAL statement_timeout = 0", &[], false),
        ("SET ROLE analyst", &[SessionEffect::Set], true),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", &[], false),
        ("RESET ALL", &[SessionEffect::Reset], true),
        (
            "SELECT set_config('app.tenant', '7', false)",
            &[SessionEffect::SetConfig],
            true,
        ),
        ("SELECT set_config('app.tenant', '7', true)", &[], false),
        (
            "SELECT set_config('app.tenant', '7', $1)",
            &[SessionEffect::SetConfig],
            true,
        ),
        ("LISTEN deal_events", &[SessionEffect::Listen], true),
        (
            "SELECT pg_advisory_lock(1)",
            &[SessionEffect::AdvisoryLock],
            true,
        ),
        (
            "SELECT pg_try_advisory_lock(1, 2)",
            &[SessionEffect::AdvisoryLock],
            true,
        ),
        ("SELECT pg_advisory_xact_lock(1)", &[], false),
        (
            "SELECT pg_advisory_unlock(1)",
            &[SessionEffect::AdvisoryUnlock],
            false,
        ),
        (
            "CREATE TEMP TABLE scratch (id int)",
            &[SessionEffect::TempObject],
            true,
        ),
        (
            "CREATE TEMPORARY VIEW v AS SELECT 1",
            &[SessionEffect::TempObject],
            true,
        ),
        (
            "SELECT * INTO TEMP t2 FROM deals",
            &[SessionEffect::TempObject],
            true,
        ),
        (
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            &[SessionEffect::CursorWithHold],
            true,
        ),
        ("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", &[], false),
        ("PREPARE p AS SELECT 1", &[SessionEffect::Prepare], true),
        ("DEALLOCATE p", &[SessionEffect::Deallocate], false),
        ("DEALLOCATE ALL", &[SessionEffect::Deallocate], false),
        ("DISCARD ALL", &[SessionEffect::Discard], false),
        ("SELECT * FROM contacts", &[], false),
    ];
    for (sql, want, pins) in cases {
        let a = analyze(sql);
        assert!(!a.parse_failed, "{sql} did not parse");
        assert_eq!(a.session_effects, *want, "{sql}");
        assert_eq!(a.pins_session(), *pins, "{sql}");
    }
}

#[test]
fn temp_tables_and_catalogs() {
    assert!(analyze("CREATE TEMP TABLE s (id int)").temp_tables);
    assert!(analyze("SELECT * FROM pg_temp.s").temp_tables);
    assert!(!analyze("SELECT * FROM contacts").temp_tables);
    for sql in [
        "SELECT * FROM pg_catalog.pg_class",
        "SELECT relname FROM pg_class",
        "SELECT * FROM information_schema.columns",
        "SELECT * FROM pg_stat_activity",
    ] {
        let a = analyze(sql);
        assert!(a.system_catalogs && !a.is_cacheable(), "{sql}");
    }
    assert!(!analyze("SELECT * FROM contacts").system_catalogs);
}

#[test]
fn unparsable_statements_are_conservative() {
    for sql in [
        "SELEKT * FROM contacts",
        "SELECT * FROM contacts WHERE (",
        // Valid PostgreSQL that sqlparser 0.64 does not parse: still conservative.
        "TABLE contacts",
        "CREATE TABLE t (id int) PARTITION OF x FOR VALUES IN (((",
    ] {
        let a = analyze(sql);
        assert!(a.parse_failed, "{sql}");
        assert_eq!(a.kind, Unknown);
        assert!(a.may_write() && !a.is_cacheable(), "{sql}");
    }
    assert!(vigil_analyzer::try_analyze("SELEKT 1").is_err());
    let a = analyze("SET LOCAL foo.bar TO DEFAULT ((");
    assert!(a.parse_failed && a.session_effects.is_empty());
}

#[test]
fn operation_names_and_multi_statement_strings() {
    assert_eq!(analyze("select 1").operation, "SELECT");
    assert_eq!(
        analyze("WITH x AS (SELECT 1) SELECT * FROM x").operation,
        "SELECT"
    );
    assert_eq!(
        analyze("insert into contacts (email) values ('x')").operation,
        "INSERT"
    );
    assert_eq!(analyze("CREATE TABLE t (id int)").operation, "CREATE TABLE");
    let a = analyze("BEGIN; UPDATE deals SET stage = 'won' WHERE id = 1; COMMIT");
    assert_eq!(a.statements, 3);
    assert_eq!(a.kind, Write);
    assert_eq!(a.tables_written, vec!["deals"]);
    let a = analyze("");
    assert_eq!(a.statements, 0);
    assert_eq!(a.kind, Utility);
}

#[test]
fn orm_generated_statements() {
    let cases: &[(&str, StatementKind, &[&str], &[&str])] = &[
        (
            "SELECT \"contacts\".* FROM \"contacts\" WHERE \"contacts\".\"id\" = $1 LIMIT $2 /*action='show',controller='contacts'*/",
            Read,
            &["contacts"],
            &[],
        ),
        (
            "INSERT INTO \"deals\" (\"name\", \"stage\", \"created_at\") VALUES ($1, $2, $3) RETURNING \"id\"",
            Write,
            &[],
            &["deals"],
        ),
        (
            "UPDATE \"contacts\" SET \"score\" = $1, \"updated_at\" = $2 WHERE \"contacts\".\"id\" = $3",
            Write,
            &[],
            &["contacts"],
        ),
        (
            "SELECT \"crm_deal\".\"id\", \"crm_company\".\"name\" FROM \"crm_deal\" INNER JOIN \"crm_company\" ON (\"crm_deal\".\"company_id\" = \"crm_company\".\"id\") WHERE \"crm_deal\".\"stage\" IN ('won', 'lost')",
            Read,
            &["crm_deal", "crm_company"],
            &[],
        ),
        (
            "select d1_0.id,d1_0.name from deals d1_0 where d1_0.company_id=$1 for no key update",
            Read,
            &["deals"],
            &[],
        ),
    ];
    for (sql, kind, read, written) in cases {
        let a = analyze(sql);
        assert!(!a.parse_failed, "{sql}");
        assert_eq!(a.kind, *kind, "{sql}");
        assert_eq!(
            a.tables_read,
            read.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "{sql}"
        );
        assert_eq!(
            a.tables_written,
            written.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "{sql}"
        );
    }
}

#[test]
fn telemetry_summary() {
    assert_eq!(
        analyze("SELECT * FROM contacts c JOIN companies co ON co.id = c.company_id").summary(),
        "SELECT contacts"
    );
    assert_eq!(
        analyze("INSERT INTO deals (name) SELECT name FROM companies").summary(),
        "INSERT deals"
    );
    assert_eq!(analyze("BEGIN").summary(), "BEGIN");
    assert_eq!(analyze("SELEKT nonsense").summary(), "SELEKT");
}
