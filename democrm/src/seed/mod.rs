//! Deterministic CRM data for PostgreSQL.
//!
//! [`seed`] drops and recreates the CRM schema, loads every table with `COPY ... FROM STDIN`
//! (tables in parallel, each on its own connection, rows from a per-table ChaCha stream so the
//! data is identical run after run), then adds primary keys and indexes and runs `ANALYZE`.
//!
//! Deliberately missing: a trigram (`pg_trgm` GIN) index for the contact search (`ILIKE
//! '%term%'` over names, email and company) and an index on `activities.occurred_at` for the
//! dashboard, so those routes stay heavy and Vigil's heavy-query report has something to find.
//!
//! - `generate`: the row generators (text COPY format).

mod generate;

pub use generate::{ACTIONS, ANCHOR_UNIX, AUTOMATION_FROM, CAMPAIGN_FROM};

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::SinkExt;
use tokio_postgres::{Client, NoTls};

use crate::sqlc;

/// How much data to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub companies: u64,
    pub contacts: u64,
    pub deals: u64,
    pub activities: u64,
    pub campaigns: u64,
    /// Automations cycle through send_email, send_sms, charge_card (at least 3 for all kinds).
    pub automations: u64,
    pub messages: u64,
    pub payments: u64,
    /// The generator seed; the same seed and scale give the same rows.
    pub seed: u64,
}

impl Scale {
    /// The demo volume: 100k contacts, 1M activities.
    pub fn demo() -> Scale {
        Scale {
            companies: 5_000,
            contacts: 100_000,
            deals: 20_000,
            activities: 1_000_000,
            campaigns: 20,
            automations: 12,
            messages: 50_000,
            payments: 5_000,
            seed: 0x5EED_C0DE,
        }
    }

    /// A small volume for tests (1k contacts, 5k activities).
    pub fn tiny() -> Scale {
        Scale {
            companies: 50,
            contacts: 1_000,
            deals: 200,
            activities: 5_000,
            campaigns: 5,
            automations: 6,
            messages: 500,
            payments: 100,
            seed: 0x5EED_C0DE,
        }
    }
}

/// What [`seed`] did.
#[derive(Debug, Clone)]
pub struct SeedReport {
    /// `(table, rows)` in load order.
    pub rows: Vec<(&'static str, u64)>,
    /// Time spent in schema + COPY.
    pub load: Duration,
    /// Time spent on keys, indexes and ANALYZE.
    pub index: Duration,
    pub total: Duration,
}

/// Why seeding failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("invalid database URL: {0}")]
    Url(#[source] tokio_postgres::Error),
    #[error("PostgreSQL error while {what}: {source}")]
    Pg {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("a load task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

fn pg(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> SeedError {
    move |source| SeedError::Pg { what, source }
}

/// The table names, in load order.
pub const TABLES: [&str; 8] = [
    "companies",
    "contacts",
    "deals",
    "activities",
    "campaigns",
    "automations",
    "messages",
    "payments",
];

const SCHEMA: &str = "
DROP TABLE IF EXISTS payments, messages, automations, campaigns, activities, deals, contacts, companies CASCADE;
CREATE TABLE companies (id bigserial, name text NOT NULL, domain text NOT NULL, industry text NOT NULL,
  employees integer NOT NULL, country text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE contacts (id bigserial, company_id bigint NOT NULL, first_name text NOT NULL,
  last_name text NOT NULL, email text NOT NULL, phone text NOT NULL, title text NOT NULL,
  city text NOT NULL, status text NOT NULL, lead_score integer NOT NULL,
  created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE deals (id bigserial, company_id bigint NOT NULL, contact_id bigint NOT NULL,
  name text NOT NULL, stage text NOT NULL, amount_cents bigint NOT NULL, probability integer NOT NULL,
  owner_name text NOT NULL, created_at timestamptz NOT NULL, closed_at timestamptz);
CREATE TABLE activities (id bigserial, contact_id bigint NOT NULL, deal_id bigint, kind text NOT NULL,
  subject text NOT NULL, notes text NOT NULL, occurred_at timestamptz NOT NULL);
CREATE TABLE campaigns (id bigserial, name text NOT NULL, subject text NOT NULL, segment text NOT NULL,
  from_email text NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE automations (id bigserial, name text NOT NULL, trigger_event text NOT NULL,
  action text NOT NULL, template text NOT NULL, amount_cents bigint, enabled boolean NOT NULL,
  created_at timestamptz NOT NULL);
CREATE TABLE messages (id bigserial, contact_id bigint NOT NULL, campaign_id bigint, automation_id bigint,
  channel text NOT NULL, provider text NOT NULL, provider_message_id text, status text NOT NULL,
  error_code text, created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE payments (id bigserial, contact_id bigint NOT NULL, automation_id bigint,
  provider_payment_id text, amount_cents bigint NOT NULL, currency text NOT NULL, status text NOT NULL,
  decline_code text, created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
";

const POST_LOAD: &str = "
ALTER TABLE companies ADD PRIMARY KEY (id);
ALTER TABLE contacts ADD PRIMARY KEY (id);
ALTER TABLE deals ADD PRIMARY KEY (id);
ALTER TABLE activities ADD PRIMARY KEY (id);
ALTER TABLE campaigns ADD PRIMARY KEY (id);
ALTER TABLE automations ADD PRIMARY KEY (id);
ALTER TABLE messages ADD PRIMARY KEY (id);
ALTER TABLE payments ADD PRIMARY KEY (id);
CREATE INDEX contacts_company_id_idx ON contacts (company_id);
CREATE INDEX contacts_email_idx ON contacts (email);
CREATE INDEX contacts_status_id_idx ON contacts (status, id);
CREATE INDEX deals_company_id_idx ON deals (company_id);
CREATE INDEX deals_contact_id_idx ON deals (contact_id);
CREATE INDEX deals_stage_idx ON deals (stage);
CREATE INDEX activities_contact_id_occurred_at_idx ON activities (contact_id, occurred_at DESC);
CREATE INDEX messages_provider_message_id_idx ON messages (provider_message_id);
CREATE INDEX messages_contact_id_idx ON messages (contact_id);
CREATE INDEX payments_provider_payment_id_idx ON payments (provider_payment_id);
CREATE INDEX payments_contact_id_idx ON payments (contact_id);
";

async fn connect(url: &str) -> Result<Client, SeedError> {
    let config: tokio_postgres::Config = url.parse().map_err(SeedError::Url)?;
    let (client, conn) = config.connect(NoTls).await.map_err(pg("connecting"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "democrm seed connection ended");
        }
    });
    Ok(client)
}

/// Drops and recreates the CRM schema at `url`, loads `scale` rows and indexes them.
pub async fn seed(url: &str, scale: Scale) -> Result<SeedReport, SeedError> {
    let started = Instant::now();
    let client = connect(url).await?;
    client
        .batch_execute(&sqlc::tag(SCHEMA, "seed"))
        .await
        .map_err(pg("creating the schema"))?;

    let mut tasks = tokio::task::JoinSet::new();
    for table in TABLES {
        let url = url.to_string();
        tasks.spawn(async move {
            let client = connect(&url).await?;
            let rows = load_table(&client, table, scale).await?;
            Ok::<_, SeedError>((table, rows))
        });
    }
    let mut loaded = Vec::new();
    while let Some(res) = tasks.join_next().await {
        loaded.push(res??);
    }
    loaded.sort_by_key(|(t, _)| TABLES.iter().position(|x| x == t));
    let load = started.elapsed();

    let index_started = Instant::now();
    client
        .batch_execute(&sqlc::tag(POST_LOAD, "seed"))
        .await
        .map_err(pg("creating keys and indexes"))?;
    let mut setval = String::new();
    for t in TABLES {
        setval.push_str(&format!(
            "SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM {t}), false);\n"
        ));
    }
    setval.push_str("ANALYZE;");
    client
        .batch_execute(&sqlc::tag(&setval, "seed"))
        .await
        .map_err(pg("resetting sequences and analyzing"))?;
    let index = index_started.elapsed();
    Ok(SeedReport {
        rows: loaded,
        load,
        index,
        total: started.elapsed(),
    })
}

/// COPY chunk size.
const CHUNK: usize = 512 * 1024;

async fn load_table(client: &Client, table: &'static str, scale: Scale) -> Result<u64, SeedError> {
    let (columns, rows) = generate::columns(table, &scale);
    let sql = sqlc::tag(&format!("COPY {table} ({columns}) FROM STDIN"), "seed");
    let sink = client
        .copy_in::<_, Bytes>(&sql)
        .await
        .map_err(pg("starting COPY"))?;
    futures::pin_mut!(sink);
    let mut rows_gen = generate::Rows::new(table, scale);
    let mut buf = String::with_capacity(CHUNK + 4096);
    for i in 1..=rows {
        rows_gen.row(i, &mut buf);
        if buf.len() >= CHUNK {
            let chunk = Bytes::from(std::mem::replace(
                &mut buf,
                String::with_capacity(CHUNK + 4096),
            ));
            sink.send(chunk).await.map_err(pg("sending COPY data"))?;
        }
    }
    if !buf.is_empty() {
        sink.send(Bytes::from(buf))
            .await
            .map_err(pg("sending COPY data"))?;
    }
    let n = sink.as_mut().finish().await.map_err(pg("finishing COPY"))?;
    Ok(n)
}

/// Per table: `(table, row count, md5 of all rows in id order)`; equal checksums mean equal data.
pub async fn table_checksums(url: &str) -> Result<Vec<(&'static str, i64, String)>, SeedError> {
    let client = connect(url).await?;
    let mut out = Vec::new();
    for t in TABLES {
        let sql = sqlc::tag(
            &format!(
                "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY id)), '') FROM {t} t"
            ),
            "seed",
        );
        let row = client
            .query_one(&sql, &[])
            .await
            .map_err(pg("checksumming"))?;
        out.push((t, row.get(0), row.get(1)));
    }
    Ok(out)
}
