//! Table-driven classification: kind, tables read and tables written for 100+ statements
//! (see classification_effects.rs for functions, locking, session effects and the rest).

use vigil_analyzer::{StatementKind, analyze};

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
