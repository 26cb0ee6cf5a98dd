//! The seed at tiny scale: row counts, fake contact data, indexes (with the deliberate gap),
//! sequences, and determinism (two seeds give identical checksums).

mod common;

use vigil_democrm::seed::{TABLES, table_checksums};
use vigil_democrm::{Scale, seed};
use vigil_testkit::PgServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_seed_counts_and_is_deterministic() {
    let pg = PgServer::shared();
    let a = pg.create_database().unwrap();
    let b = pg.create_database().unwrap();
    let scale = Scale::tiny();
    let report = seed(&a.url, scale).await.expect("seed a");
    seed(&b.url, scale).await.expect("seed b");

    let expected = [
        ("companies", scale.companies),
        ("contacts", scale.contacts),
        ("deals", scale.deals),
        ("activities", scale.activities),
        ("campaigns", scale.campaigns),
        ("automations", scale.automations),
        ("messages", scale.messages),
        ("payments", scale.payments),
    ];
    assert_eq!(report.rows, expected.to_vec());
    assert!(report.total >= report.load);

    let sums_a = table_checksums(&a.url).await.unwrap();
    let sums_b = table_checksums(&b.url).await.unwrap();
    assert_eq!(sums_a.len(), TABLES.len());
    for ((table, count, sum), (want_table, want_count)) in sums_a.iter().zip(expected) {
        assert_eq!(*table, want_table);
        assert_eq!(*count as u64, want_count, "{table}");
        assert_eq!(sum.len(), 32, "{table} checksum");
    }
    assert_eq!(sums_a, sums_b, "two seeds must produce identical data");

    // A different seed gives different data.
    let c = pg.create_database().unwrap();
    seed(&c.url, Scale { seed: 1, ..scale }).await.unwrap();
    let sums_c = table_checksums(&c.url).await.unwrap();
    assert_ne!(sums_a[1].2, sums_c[1].2);

    // Reseeding the same database starts over instead of appending.
    seed(&a.url, scale).await.expect("reseed a");
    assert_eq!(table_checksums(&a.url).await.unwrap(), sums_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_data_is_clearly_fake_and_indexes_follow_the_plan() {
    let url = common::seeded_db().await;
    let q = |sql: &str| common::psql(&url, sql);
    assert_eq!(
        q(
            "SELECT count(*) FROM contacts WHERE email NOT LIKE '%@example.com' OR phone NOT LIKE '+1555%'"
        ),
        "0"
    );
    assert_eq!(q("SELECT count(DISTINCT email) FROM contacts"), "1000");
    assert_eq!(
        q(
            "SELECT count(*) FROM contacts c LEFT JOIN companies co ON co.id = c.company_id WHERE co.id IS NULL"
        ),
        "0"
    );
    assert_eq!(
        q("SELECT string_agg(DISTINCT action, ',' ORDER BY action) FROM automations"),
        "charge_card,send_email,send_sms"
    );
    // Primary keys and the planned indexes exist...
    assert_eq!(
        q(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND indexname LIKE '%_pkey'"
        ),
        "8"
    );
    assert_eq!(
        q(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'activities_contact_id_occurred_at_idx'"
        ),
        "1"
    );
    // ...but nothing serves `ILIKE '%term%'` on contacts: the search stays a sequential scan.
    assert_eq!(
        q(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'contacts' AND (indexdef ILIKE '%gin%' OR indexdef ILIKE '%trgm%' OR indexdef ILIKE '%first_name%' OR indexdef ILIKE '%last_name%')"
        ),
        "0"
    );
    let plan =
        q("EXPLAIN SELECT id FROM contacts WHERE first_name ILIKE '%smi%' OR email ILIKE '%smi%'");
    assert!(plan.contains("Seq Scan on contacts"), "{plan}");
    // Sequences continue after the loaded ids.
    assert_eq!(
        q(
            "INSERT INTO messages (contact_id, channel, provider, status) VALUES (1, 'email', 'sendgrid', 'queued') RETURNING id"
        ),
        "501"
    );
}
