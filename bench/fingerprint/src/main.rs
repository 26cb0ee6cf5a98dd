//! Fingerprints per second per core on a generated corpus of real-looking CRM statements:
//! - Vigil's one-pass lexer (`fingerprint_id`, allocation-free; and `fingerprint`, with text + tags),
//! - sqlparser 0.64's tokenizer with a token-level normalization (constants -> `?`, lowercase
//!   keywords, comments/whitespace dropped) hashed with std's `DefaultHasher`,
//! - libpg_query's `pg_query::fingerprint` (PostgreSQL's own parser; the pganalyze fingerprint).
//!
//! Single-threaded and timed with the thread's CPU clock, methods interleaved round by round,
//! best pass per method: the rates are per core even on a busy machine.
//! Usage: `cargo run --release [-- <statements> <cpu seconds per method>]`;
//! `BENCH_ONLY=vigil` skips the other methods (for profiling).

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::hint::black_box;
use std::time::Duration;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

/// xorshift64* for a deterministic corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const TABLES: &[(&str, &[&str])] = &[
    ("contacts", &["id", "company_id", "email", "first_name", "last_name", "score", "active", "created_at", "updated_at"]),
    ("companies", &["id", "name", "industry", "tier", "country", "created_at", "updated_at"]),
    ("deals", &["id", "company_id", "contact_id", "name", "stage", "amount", "closed_on", "created_at"]),
    ("activities", &["id", "contact_id", "deal_id", "kind", "note", "due_at", "created_at"]),
    ("campaigns", &["id", "name", "channel", "priority", "budget", "starts_on", "created_at"]),
    ("messages", &["id", "campaign_id", "contact_id", "subject", "status", "sent_at", "opened_at"]),
    ("payments", &["id", "deal_id", "amount", "currency", "status", "paid_at", "created_at"]),
];

fn constant(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => format!("'{}'", rng.pick(&["won", "lost", "open", "O''Brien", "jane@example.com", "EUR"])),
        1 => format!("{}.{:02}", rng.below(100_000), rng.below(100)),
        2 => format!("'2025-{:02}-{:02}'", 1 + rng.below(12), 1 + rng.below(28)),
        3 => rng.pick(&["true", "false"]).to_string(),
        _ => (1 + rng.below(1_000_000)).to_string(),
    }
}

fn list(rng: &mut Rng, max: u64) -> String {
    let n = 1 + rng.below(max);
    (0..n).map(|_| (1 + rng.below(100_000)).to_string()).collect::<Vec<_>>().join(", ")
}

fn tail(rng: &mut Rng) -> &'static str {
    match rng.below(4) {
        0 => " /*action='show',application='crm',controller='deals',db_driver='pg',framework='rails%3A7.1',route='%2Fdeals%2F%3Aid',traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/",
        1 => " -- batch import",
        _ => "",
    }
}

fn statement(rng: &mut Rng) -> String {
    let (t, cols) = TABLES[rng.below(TABLES.len() as u64) as usize];
    let c = |rng: &mut Rng| cols[rng.below(cols.len() as u64) as usize];
    let tail = tail(rng);
    match rng.below(14) {
        // Rails / ActiveRecord style, quoted identifiers and bind parameters.
        0 => format!("SELECT \"{t}\".* FROM \"{t}\" WHERE \"{t}\".\"id\" = $1 LIMIT $2{tail}"),
        1 => format!(
            "SELECT \"{t}\".\"id\", \"{t}\".\"{}\" FROM \"{t}\" WHERE \"{t}\".\"{}\" IN ({}) ORDER BY \"{t}\".\"created_at\" DESC LIMIT 25 OFFSET {}{tail}",
            c(rng), c(rng), list(rng, 40), rng.below(500)
        ),
        // Django style.
        2 => format!(
            "SELECT {t}.id, {t}.{}, {t}.{} FROM {t} WHERE ({t}.{} = {} AND {t}.{} IS NOT NULL) ORDER BY {t}.id ASC",
            c(rng), c(rng), c(rng), constant(rng), c(rng)
        ),
        3 => format!("UPDATE {t} SET {} = {}, updated_at = now() WHERE id = {}{tail}", c(rng), constant(rng), rng.below(100_000)),
        4 => format!("DELETE FROM {t} WHERE id = {}{tail}", rng.below(100_000)),
        5 => {
            let n = 1 + rng.below(20);
            let rows: Vec<String> = (0..n).map(|_| format!("({}, {}, {}, now())", constant(rng), constant(rng), constant(rng))).collect();
            format!("INSERT INTO {t} ({}, {}, {}, created_at) VALUES {} RETURNING id{tail}", cols[1], cols[2], cols[3], rows.join(", "))
        }
        6 => format!(
            "SELECT c.id, c.email, co.name, count(d.id) AS deals, sum(d.amount) AS total FROM contacts c JOIN companies co ON co.id = c.company_id LEFT JOIN deals d ON d.contact_id = c.id AND d.stage = {} WHERE co.tier >= {} AND c.created_at > now() - interval '{} days' GROUP BY c.id, c.email, co.name HAVING sum(d.amount) > {} ORDER BY total DESC NULLS LAST LIMIT {}{tail}",
            constant(rng), rng.below(5), rng.below(90), rng.below(10_000), 10 + rng.below(90)
        ),
        7 => format!(
            "WITH recent AS (SELECT contact_id, max(created_at) AS last_at FROM activities WHERE kind = {} GROUP BY contact_id), scored AS (SELECT c.*, r.last_at FROM contacts c JOIN recent r ON r.contact_id = c.id WHERE c.score > {}) SELECT id, email, last_at FROM scored ORDER BY last_at DESC LIMIT {}",
            constant(rng), rng.below(100), rng.below(200)
        ),
        8 => format!("SELECT id FROM {t} WHERE id = ANY(ARRAY[{}]) FOR UPDATE SKIP LOCKED", list(rng, 10)),
        9 => format!(
            "INSERT INTO payments (deal_id, amount, currency, status) VALUES ({}, {}.{:02}, 'EUR', 'pending') ON CONFLICT (deal_id) DO UPDATE SET amount = EXCLUDED.amount, status = EXCLUDED.status{tail}",
            rng.below(100_000), rng.below(10_000), rng.below(100)
        ),
        10 => format!(
            "SELECT m.id, m.subject, cp.name FROM messages m JOIN campaigns cp ON cp.id = m.campaign_id WHERE m.status = {} AND m.sent_at BETWEEN '2025-01-01' AND '2025-{:02}-28' AND m.contact_id IN (SELECT id FROM contacts WHERE active = true AND company_id = {})",
            constant(rng), 1 + rng.below(12), rng.below(5000)
        ),
        11 => format!("SELECT count(*) FROM {t} WHERE {} > {} AND {} <> {}", c(rng), constant(rng), c(rng), constant(rng)),
        12 => format!(
            "UPDATE deals d SET stage = 'won', closed_on = current_date FROM payments p WHERE p.deal_id = d.id AND p.status = 'paid' AND d.id = {} RETURNING d.id, d.stage{tail}",
            rng.below(100_000)
        ),
        _ => format!("SELECT * FROM {t} WHERE {} = {} ORDER BY 1 LIMIT {}", c(rng), constant(rng), 1 + rng.below(100)),
    }
}

/// sqlparser tokenizer-based normalization: constants -> `?`, keywords/identifiers lowercased
/// (quoted kept), comments and whitespace dropped; hashed with std's `DefaultHasher`.
fn sqlparser_fingerprint(sql: &str) -> Option<u64> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql).tokenize().ok()?;
    let mut h = DefaultHasher::new();
    for t in tokens {
        match t {
            Token::Whitespace(_) => continue,
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::DollarQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::UnicodeStringLiteral(_) => "?".hash(&mut h),
            Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_lowercase().hash(&mut h),
            other => other.to_string().hash(&mut h),
        }
    }
    Some(h.finish())
}

fn pg_query_fingerprint(sql: &str) -> Option<u64> {
    pg_query::fingerprint(sql, pg_query::ParserOptions::DEFAULT, pg_query::FingerprintOptions::DEFAULT)
        .ok()
        .map(|f| f.value)
}

/// CPU time of the calling thread: excludes time the thread waited for a core, so rates stay
/// per-core on a busy machine.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One pass over the corpus; returns the thread CPU time it took.
fn pass(corpus: &[String], f: &dyn Fn(&str) -> u64) -> Duration {
    let start = thread_cpu();
    for s in corpus {
        black_box(f(black_box(s)));
    }
    thread_cpu() - start
}

/// Runs the methods in interleaved rounds until each used `budget` of CPU; returns, per method,
/// fingerprints per second of CPU from its fastest pass (robust to noise from other processes).
fn measure(corpus: &[String], budget: Duration, methods: &[&dyn Fn(&str) -> u64]) -> Vec<f64> {
    let mut best = vec![Duration::MAX; methods.len()];
    let mut spent = vec![Duration::ZERO; methods.len()];
    for f in methods {
        pass(corpus, *f); // warm-up
    }
    while spent.iter().any(|s| *s < budget) {
        for (i, f) in methods.iter().enumerate() {
            let d = pass(corpus, *f);
            spent[i] += d;
            best[i] = best[i].min(d);
        }
    }
    best.iter().map(|d| corpus.len() as f64 / d.as_secs_f64()).collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000).max(1000);
    let secs: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let budget = Duration::from_secs_f64(secs);

    let mut rng = Rng(0x5EED_0F_F1D6_E4);
    let corpus: Vec<String> = (0..count).map(|_| statement(&mut rng)).collect();
    let bytes: usize = corpus.iter().map(String::len).sum();
    println!("corpus: {} statements, {:.0} bytes on average", corpus.len(), bytes as f64 / corpus.len() as f64);

    let distinct = |f: &dyn Fn(&str) -> Option<u64>| corpus.iter().filter_map(|s| f(s)).collect::<HashSet<_>>().len();
    let failures = corpus.iter().filter(|s| pg_query_fingerprint(s).is_none()).count();
    println!(
        "distinct fingerprints: vigil {}, sqlparser-tokens {}, pg_query {} ({} statements pg_query rejected)",
        distinct(&|s| Some(vigil_analyzer::fingerprint_id(s))),
        distinct(&sqlparser_fingerprint),
        distinct(&pg_query_fingerprint),
        failures
    );

    // Grouping agreement with libpg_query on the corpus: a statement agrees when its Vigil
    // fingerprint maps to exactly one pg_query fingerprint and back.
    let mut v2p: std::collections::HashMap<u64, HashSet<u64>> = Default::default();
    let mut p2v: std::collections::HashMap<u64, HashSet<u64>> = Default::default();
    let pairs: Vec<(u64, u64)> = corpus
        .iter()
        .filter_map(|s| Some((vigil_analyzer::fingerprint_id(s), pg_query_fingerprint(s)?)))
        .collect();
    for (v, p) in &pairs {
        v2p.entry(*v).or_default().insert(*p);
        p2v.entry(*p).or_default().insert(*v);
    }
    let agree = pairs.iter().filter(|(v, p)| v2p[v].len() == 1 && p2v[p].len() == 1).count();
    println!("grouping agreement with pg_query fingerprints: {agree}/{} statements", pairs.len());

    let only_vigil = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "vigil");
    let vigil_id_f = |s: &str| vigil_analyzer::fingerprint_id(s);
    let vigil_full_f = |s: &str| vigil_analyzer::fingerprint(s).id;
    let sqlp_f = |s: &str| sqlparser_fingerprint(s).unwrap_or(0);
    let pgq_f = |s: &str| pg_query_fingerprint(s).unwrap_or(0);
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "lexer") {
        let lex = |s: &str| vigil_analyzer::fingerprint::lexer::Lexer::new(s).count() as u64;
        let r = measure(&corpus, budget, &[&lex, &vigil_id_f]);
        println!("lexer only: {:.2} us/stmt, fingerprint_id: {:.2} us/stmt", 1e6 / r[0], 1e6 / r[1]);
        return;
    }
    let rates = if only_vigil {
        let r = measure(&corpus, budget, &[&vigil_id_f, &vigil_full_f]);
        vec![r[0], r[1], f64::NAN, f64::NAN]
    } else {
        measure(&corpus, budget, &[&vigil_id_f, &vigil_full_f, &sqlp_f, &pgq_f])
    };
    let (vigil_id, vigil_full, sqlp, pgq) = (rates[0], rates[1], rates[2], rates[3]);

    println!("{:<44} {:>14} {:>12}", "method (1 thread)", "fingerprints/s", "us/stmt");
    for (name, rate) in [
        ("vigil fingerprint_id (lexer, no alloc)", vigil_id),
        ("vigil fingerprint (id + text + tags)", vigil_full),
        ("sqlparser 0.64 tokenizer normalization", sqlp),
        ("pg_query 18 fingerprint (libpg_query)", pgq),
    ] {
        println!("{name:<44} {rate:>14.0} {:>12.2}", 1e6 / rate);
    }
    println!("ratio vigil fingerprint_id / pg_query: {:.1}x (target >= 10x)", vigil_id / pgq);
    println!("ratio vigil fingerprint / pg_query:    {:.1}x", vigil_full / pgq);
    println!("ratio vigil fingerprint_id / sqlparser: {:.1}x", vigil_id / sqlp);
    if only_vigil {
        return;
    }
    // The ratio depends on statement size: per-call overhead dominates pg_query on short ones.
    for (label, lo, hi) in [("< 120 bytes", 0, 120), ("120-300 bytes", 120, 300), (">= 300 bytes", 300, usize::MAX)] {
        let part: Vec<String> = corpus.iter().filter(|s| s.len() >= lo && s.len() < hi).cloned().collect();
        if part.is_empty() {
            continue;
        }
        let r = measure(&part, budget / 3, &[&vigil_id_f, &pgq_f]);
        println!(
            "  {label:<14} {:>5} stmts: vigil {:.2} us, pg_query {:.2} us, ratio {:.1}x",
            part.len(),
            1e6 / r[0],
            1e6 / r[1],
            r[0] / r[1]
        );
    }
}
