//! Table-driven classification: kind, tables read and tables written for 100+ statements,
//! plus functions, locking, temp tables, catalogs and session effects.

use vigil_analyzer::{
    FunctionVolatility, LockStrength, SessionEffect, StatementKind, Volatility, analyze,
    analyze_with,
};

use StatementKind::*;

/// (sql, kind, tables read, tables written)
const CASES: &[(&str, StatementKind, &[&str], &[&str])] = &[
    // --- plain reads
    ("SELECT * FROM contacts", Read, &["contacts"], &[]),
    (
        "SELECT id, email FROM contacts WHERE id = 1",
        Read,
        &["contacts"],
        &[],
    ),
    ("select count(*) from Deals", Read, &["deals"], &[]),
    (
        "SELECT * FROM public.contacts",
        Read,
        &["public.contacts"],
        &[],
    ),
    ("SELECT * FROM \"Contacts\"", Read, &["Contacts"], &[]),
    ("SELECT 1", Read, &[], &[]),
    ("SELECT now()", Read, &[], &[]),
    ("SELECT nextval('contacts_id_seq')", Read, &[], &[]),
    ("VALUES (1, 2), (3, 4)", Read, &[], &[]),
    (
        "SELECT c.name, co.name FROM contacts c JOIN companies co ON co.id = c.company_id",
        Read,
        &["contacts", "companies"],
        &[],
    ),
    (
        "SELECT * FROM contacts c LEFT JOIN companies co ON co.id = c.company_id LEFT JOIN deals d ON d.contact_id = c.id",
        Read,
        &["contacts", "companies", "deals"],
        &[],
    ),
    (
        "SELECT * FROM deals d RIGHT OUTER JOIN companies c USING (company_id)",
        Read,
        &["deals", "companies"],
        &[],
    ),
    (
        "SELECT * FROM contacts CROSS JOIN campaigns",
        Read,
        &["contacts", "campaigns"],
        &[],
    ),
    (
        "SELECT * FROM contacts, companies WHERE contacts.company_id = companies.id",
        Read,
        &["contacts", "companies"],
        &[],
    ),
    (
        "SELECT * FROM contacts WHERE company_id IN (SELECT id FROM companies WHERE industry = 'saas')",
        Read,
        &["contacts", "companies"],
        &[],
    ),
    (
        "SELECT * FROM contacts c WHERE EXISTS (SELECT 1 FROM deals d WHERE d.contact_id = c.id)",
        Read,
        &["contacts", "deals"],
        &[],
    ),
    (
        "SELECT (SELECT count(*) FROM activities a WHERE a.contact_id = c.id) FROM contacts c",
        Read,
        &["activities", "contacts"],
        &[],
    ),
    (
        "SELECT * FROM (SELECT * FROM payments WHERE amount > 10) p",
        Read,
        &["payments"],
        &[],
    ),
    (
        "SELECT * FROM contacts c, LATERAL (SELECT * FROM activities a WHERE a.contact_id = c.id LIMIT 3) la",
        Read,
        &["contacts", "activities"],
        &[],
    ),
    (
        "SELECT id FROM contacts UNION SELECT contact_id FROM deals",
        Read,
        &["contacts", "deals"],
        &[],
    ),
    (
        "SELECT id FROM contacts EXCEPT SELECT contact_id FROM messages",
        Read,
        &["contacts", "messages"],
        &[],
    ),
    (
        "SELECT id FROM contacts INTERSECT ALL SELECT contact_id FROM payments",
        Read,
        &["contacts", "payments"],
        &[],
    ),
    (
        "WITH big AS (SELECT * FROM deals WHERE amount > 1000) SELECT * FROM big",
        Read,
        &["deals"],
        &[],
    ),
    (
        "WITH a AS (SELECT * FROM contacts), b AS (SELECT * FROM a JOIN companies ON true) SELECT * FROM b",
        Read,
        &["contacts", "companies"],
        &[],
    ),
    (
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 10) SELECT * FROM t",
        Read,
        &[],
        &[],
    ),
    ("SELECT * FROM generate_series(1, 10) g", Read, &[], &[]),
    (
        "SELECT * FROM contacts c JOIN unnest(ARRAY[1,2]) u(id) ON u.id = c.id",
        Read,
        &["contacts"],
        &[],
    ),
    (
        "SELECT company_id, sum(amount) FROM deals GROUP BY company_id HAVING sum(amount) > 100 ORDER BY 2 DESC LIMIT 5",
        Read,
        &["deals"],
        &[],
    ),
    (
        "SELECT DISTINCT ON (contact_id) * FROM activities ORDER BY contact_id, created_at DESC",
        Read,
        &["activities"],
        &[],
    ),
    (
        "SELECT id, row_number() OVER (PARTITION BY company_id ORDER BY created_at) FROM contacts",
        Read,
        &["contacts"],
        &[],
    ),
    (
        "SELECT * FROM contacts WHERE email ILIKE '%@example.com' OFFSET 10 LIMIT 10",
        Read,
        &["contacts"],
        &[],
    ),
    (
        "SELECT * FROM contacts WHERE id = $1",
        Read,
        &["contacts"],
        &[],
    ),
    (
        "SELECT * FROM contacts WHERE id = ANY($1)",
        Read,
        &["contacts"],
        &[],
    ),
    (
        "SELECT * FROM messages WHERE body @@ to_tsquery('x')",
        Read,
        &["messages"],
        &[],
    ),
    (
        "SELECT data->>'k' FROM campaigns WHERE data @> '{\"a\":1}'",
        Read,
        &["campaigns"],
        &[],
    ),
    (
        "SELECT * FROM contacts WHERE id = 1 FOR UPDATE",
        Read,
        &["contacts"],
        &[],
    ),
    (
        "SELECT * FROM deals WHERE id = 1 FOR NO KEY UPDATE",
        Read,
        &["deals"],
        &[],
    ),
    (
        "SELECT * FROM deals WHERE id = 1 FOR SHARE",
        Read,
        &["deals"],
        &[],
    ),
    (
        "SELECT * FROM deals WHERE id = 1 FOR KEY SHARE",
        Read,
        &["deals"],
        &[],
    ),
    (
        "SELECT * FROM payments WHERE status = 'pending' ORDER BY id LIMIT 10 FOR UPDATE SKIP LOCKED",
        Read,
        &["payments"],
        &[],
    ),
    (
        "SELECT * FROM deals d JOIN contacts c ON c.id = d.contact_id FOR UPDATE OF d",
        Read,
        &["deals", "contacts"],
        &[],
    ),
    (
        "SELECT * FROM pg_catalog.pg_class",
        Read,
        &["pg_catalog.pg_class"],
        &[],
    ),
    (
        "SELECT * FROM pg_stat_activity",
        Read,
        &["pg_stat_activity"],
        &[],
    ),
    (
        "SELECT table_name FROM information_schema.tables",
        Read,
        &["information_schema.tables"],
        &[],
    ),
    (
        "SELECT current_user, current_setting('search_path')",
        Read,
        &[],
        &[],
    ),
    ("SELECT pg_advisory_lock(42)", Read, &[], &[]),
    ("SELECT pg_advisory_xact_lock(42)", Read, &[], &[]),
    ("SELECT set_config('app.user', '7', false)", Read, &[], &[]),
    ("SELECT set_config('app.user', '7', true)", Read, &[], &[]),
    (
        "SELECT * FROM pg_temp.scratch",
        Read,
        &["pg_temp.scratch"],
        &[],
    ),
    // --- inserts
    (
        "INSERT INTO contacts (email) VALUES ('a@b.c')",
        Write,
        &[],
        &["contacts"],
    ),
    (
        "INSERT INTO contacts (email) VALUES ('a@b.c'), ('d@e.f') RETURNING id",
        Write,
        &[],
        &["contacts"],
    ),
    (
        "INSERT INTO contacts (email, company_id) VALUES ($1, $2) RETURNING *",
        Write,
        &[],
        &["contacts"],
    ),
    (
        "INSERT INTO public.deals (name) VALUES ('x')",
        Write,
        &[],
        &["public.deals"],
    ),
    (
        "INSERT INTO contacts (email) SELECT email FROM messages WHERE direction = 'in'",
        Write,
        &["messages"],
        &["contacts"],
    ),
    (
        "INSERT INTO activities (contact_id, kind) SELECT c.id, 'import' FROM contacts c JOIN companies co ON co.id = c.company_id",
        Write,
        &["contacts", "companies"],
        &["activities"],
    ),
    (
        "INSERT INTO contacts (email) VALUES ('a') ON CONFLICT (email) DO NOTHING",
        Write,
        &[],
        &["contacts"],
    ),
    (
        "INSERT INTO contacts (email, name) VALUES ('a', 'b') ON CONFLICT (email) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        Write,
        &[],
        &["contacts"],
    ),
    (
        "INSERT INTO contacts (email) VALUES ((SELECT max(email) FROM companies))",
        Write,
        &["companies"],
        &["contacts"],
    ),
    (
        "INSERT INTO contacts DEFAULT VALUES",
        Write,
        &[],
        &["contacts"],
    ),
    (
        "INSERT INTO contacts (id, email) VALUES (nextval('contacts_id_seq'), 'x')",
        Write,
        &[],
        &["contacts"],
    ),
    (
        "INSERT INTO activities (contact_id, created_at) VALUES (1, now())",
        Write,
        &[],
        &["activities"],
    ),
    (
        "INSERT INTO contacts SELECT * FROM contacts WHERE id = 1",
        Write,
        &["contacts"],
        &["contacts"],
    ),
    // --- updates
    (
        "UPDATE contacts SET name = 'x' WHERE id = 1",
        Write,
        &[],
        &["contacts"],
    ),
    (
        "UPDATE contacts SET name = $1 WHERE id = $2 RETURNING id, name",
        Write,
        &[],
        &["contacts"],
    ),
    (
        "UPDATE deals d SET stage = 'won' FROM companies c WHERE c.id = d.company_id AND c.name = 'x'",
        Write,
        &["companies"],
        &["deals"],
    ),
    (
        "UPDATE deals SET amount = (SELECT sum(amount) FROM payments p WHERE p.deal_id = deals.id)",
        Write,
        &["payments"],
        &["deals"],
    ),
    (
        "UPDATE contacts SET score = score + 1 WHERE company_id IN (SELECT id FROM companies WHERE tier = 1)",
        Write,
        &["companies"],
        &["contacts"],
    ),
    (
        "UPDATE campaigns SET sent_at = now() WHERE id = 3",
        Write,
        &[],
        &["campaigns"],
    ),
    (
        "UPDATE contacts SET score = (SELECT max(score) FROM contacts) WHERE id = 1",
        Write,
        &["contacts"],
        &["contacts"],
    ),
    // --- deletes
    (
        "DELETE FROM contacts WHERE id = 1",
        Write,
        &[],
        &["contacts"],
    ),
    (
        "DELETE FROM messages WHERE created_at < now() - interval '30 days' RETURNING id",
        Write,
        &[],
        &["messages"],
    ),
    (
        "DELETE FROM activities a USING contacts c WHERE c.id = a.contact_id AND c.email LIKE '%spam%'",
        Write,
        &["contacts"],
        &["activities"],
    ),
    (
        "DELETE FROM payments WHERE deal_id IN (SELECT id FROM deals WHERE stage = 'lost')",
        Write,
        &["deals"],
        &["payments"],
    ),
    ("DELETE FROM contacts", Write, &[], &["contacts"]),
    // --- data-modifying CTEs
    (
        "WITH moved AS (DELETE FROM messages WHERE archived RETURNING *) INSERT INTO activities (kind) SELECT 'archived' FROM moved",
        Write,
        &[],
        &["messages", "activities"],
    ),
    (
        "WITH upd AS (UPDATE deals SET stage = 'won' WHERE id = 1 RETURNING company_id) SELECT * FROM companies WHERE id IN (SELECT company_id FROM upd)",
        Write,
        &["companies"],
        &["deals"],
    ),
    (
        "WITH ins AS (INSERT INTO contacts (email) VALUES ('x') RETURNING id) SELECT id FROM ins",
        Write,
        &[],
        &["contacts"],
    ),
    (
        "WITH src AS (SELECT * FROM contacts WHERE id = 1) UPDATE deals SET contact_id = src.id FROM src WHERE deals.id = 2",
        Write,
        &["contacts"],
        &["deals"],
    ),
    // --- merge
    (
        "MERGE INTO contacts c USING messages m ON c.email = m.sender WHEN MATCHED THEN UPDATE SET last_seen = m.created_at WHEN NOT MATCHED THEN INSERT (email) VALUES (m.sender)",
        Write,
        &["messages"],
        &["contacts"],
    ),
    (
        "MERGE INTO deals d USING (SELECT * FROM payments WHERE amount > 0) p ON p.deal_id = d.id WHEN MATCHED THEN DELETE",
        Write,
        &["payments"],
        &["deals"],
    ),
    // --- copy
    ("COPY contacts FROM STDIN", Write, &[], &["contacts"]),
    (
        "COPY contacts (email, name) FROM STDIN WITH (FORMAT csv)",
        Write,
        &[],
        &["contacts"],
    ),
    ("COPY contacts TO STDOUT", Read, &["contacts"], &[]),
    (
        "COPY (SELECT * FROM deals WHERE stage = 'won') TO STDOUT WITH (FORMAT csv)",
        Read,
        &["deals"],
        &[],
    ),
    // --- truncate / select into
    ("TRUNCATE messages", Write, &[], &["messages"]),
    (
        "TRUNCATE TABLE activities, messages RESTART IDENTITY CASCADE",
        Write,
        &[],
        &["activities", "messages"],
    ),
    (
        "SELECT * INTO deals_backup FROM deals",
        Write,
        &["deals"],
        &["deals_backup"],
    ),
    // --- DDL
    (
        "CREATE TABLE notes (id bigserial PRIMARY KEY, body text NOT NULL)",
        Ddl,
        &[],
        &["notes"],
    ),
    (
        "CREATE TABLE IF NOT EXISTS tags (id int)",
        Ddl,
        &[],
        &["tags"],
    ),
    ("CREATE TEMP TABLE scratch (id int)", Ddl, &[], &["scratch"]),
    (
        "CREATE TABLE won AS SELECT * FROM deals WHERE stage = 'won'",
        Ddl,
        &["deals"],
        &["won"],
    ),
    (
        "CREATE VIEW active_contacts AS SELECT * FROM contacts WHERE active",
        Ddl,
        &["contacts"],
        &["active_contacts"],
    ),
    (
        "CREATE MATERIALIZED VIEW deal_totals AS SELECT company_id, sum(amount) FROM deals GROUP BY 1",
        Ddl,
        &["deals"],
        &["deal_totals"],
    ),
    (
        "CREATE INDEX contacts_email_idx ON contacts (email)",
        Ddl,
        &[],
        &["contacts"],
    ),
    (
        "CREATE UNIQUE INDEX CONCURRENTLY deals_name_idx ON deals (lower(name))",
        Ddl,
        &[],
        &["deals"],
    ),
    (
        "ALTER TABLE contacts ADD COLUMN phone text",
        Ddl,
        &[],
        &["contacts"],
    ),
    ("ALTER TABLE deals DROP COLUMN legacy", Ddl, &[], &["deals"]),
    ("DROP TABLE scratch", Ddl, &[], &["scratch"]),
    ("DROP TABLE IF EXISTS a, b CASCADE", Ddl, &[], &["a", "b"]),
    ("DROP VIEW active_contacts", Ddl, &[], &["active_contacts"]),
    ("DROP INDEX contacts_email_idx", Ddl, &[], &[]),
    (
        "REFRESH MATERIALIZED VIEW deal_totals",
        Ddl,
        &[],
        &["deal_totals"],
    ),
    ("CREATE SEQUENCE invoice_seq", Ddl, &[], &[]),
    ("GRANT SELECT ON contacts TO analyst", Ddl, &[], &[]),
    ("COMMENT ON TABLE contacts IS 'people'", Ddl, &[], &[]),
    ("CREATE SCHEMA crm", Ddl, &[], &[]),
    // --- transaction control
    ("BEGIN", TransactionControl, &[], &[]),
    (
        "BEGIN ISOLATION LEVEL SERIALIZABLE",
        TransactionControl,
        &[],
        &[],
    ),
    ("START TRANSACTION READ ONLY", TransactionControl, &[], &[]),
    ("COMMIT", TransactionControl, &[], &[]),
    ("END", TransactionControl, &[], &[]),
    ("ROLLBACK", TransactionControl, &[], &[]),
    ("SAVEPOINT s1", TransactionControl, &[], &[]),
    ("RELEASE SAVEPOINT s1", TransactionControl, &[], &[]),
    ("ROLLBACK TO SAVEPOINT s1", TransactionControl, &[], &[]),
    (
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        TransactionControl,
        &[],
        &[],
    ),
    // --- session state
    ("SET search_path TO crm, public", SessionState, &[], &[]),
    ("SET LOCAL statement_timeout = '5s'", SessionState, &[], &[]),
    ("SET statement_timeout = 5000", SessionState, &[], &[]),
    ("SET TIME ZONE 'UTC'", SessionState, &[], &[]),
    ("RESET search_path", SessionState, &[], &[]),
    ("RESET ALL", SessionState, &[], &[]),
    ("DISCARD ALL", SessionState, &[], &[]),
    ("LISTEN deal_events", SessionState, &[], &[]),
    ("UNLISTEN *", SessionState, &[], &[]),
    (
        "PREPARE get_contact (int) AS SELECT * FROM contacts WHERE id = $1",
        SessionState,
        &["contacts"],
        &[],
    ),
    ("DEALLOCATE get_contact", SessionState, &[], &[]),
    // --- cursors, utility, unknown
    (
        "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM deals",
        Read,
        &["deals"],
        &[],
    ),
    (
        "DECLARE c CURSOR FOR SELECT * FROM contacts",
        Read,
        &["contacts"],
        &[],
    ),
    ("FETCH 10 FROM c", Read, &[], &[]),
    ("CLOSE c", Utility, &[], &[]),
    (
        "EXPLAIN SELECT * FROM contacts",
        Utility,
        &["contacts"],
        &[],
    ),
    (
        "EXPLAIN DELETE FROM contacts WHERE id = 1",
        Utility,
        &["contacts"],
        &[],
    ),
    (
        "EXPLAIN ANALYZE DELETE FROM contacts WHERE id = 1",
        Write,
        &[],
        &["contacts"],
    ),
    ("VACUUM contacts", Utility, &["contacts"], &[]),
    ("ANALYZE deals", Utility, &["deals"], &[]),
    ("SHOW search_path", Utility, &[], &[]),
    (
        "LOCK TABLE deals IN ACCESS EXCLUSIVE MODE",
        Utility,
        &["deals"],
        &[],
    ),
    ("NOTIFY deal_events, 'won'", Write, &[], &[]),
    ("EXECUTE get_contact(1)", Unknown, &[], &[]),
    ("CALL archive_old_deals()", Write, &[], &[]),
];

#[test]
fn classifies_kinds_and_tables() {
    assert!(CASES.len() >= 100, "only {} cases", CASES.len());
    let mut failures = Vec::new();
    for (sql, kind, read, written) in CASES {
        let a = analyze(sql);
        let ok = !a.parse_failed
            && a.kind == *kind
            && a.tables_read == read.iter().map(|s| s.to_string()).collect::<Vec<_>>()
            && a.tables_written == written.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        if !ok {
            failures.push(format!(
                "{sql}\n    want {kind:?} read {read:?} written {written:?}\n    got  {:?} read {:?} written {:?} parse_failed {}",
                a.kind, a.tables_read, a.tables_written, a.parse_failed
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} wrong:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

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
