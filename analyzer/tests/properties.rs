//! Property tests: the fingerprint is invariant under constant values, whitespace, comments,
//! keyword/identifier case and IN-list/VALUES length, and changes when a table, column or
//! operator changes.

use proptest::prelude::*;
use vigil_analyzer::{fingerprint, fingerprint_id};

const TABLES: &[&str] = &[
    "contacts",
    "companies",
    "deals",
    "activities",
    "payments",
    "crm.messages",
];
const COLUMNS: &[&str] = &["id", "email", "amount", "stage", "created_at", "company_id"];
const OPS: &[&str] = &["=", "<>", "<", ">", "<=", ">=", "LIKE"];

/// A statement shape: the structure that must determine the fingerprint.
#[derive(Debug, Clone)]
struct Shape {
    kind: u8,
    table: usize,
    cols: Vec<usize>,
    filter_col: usize,
    op: usize,
    in_col: Option<usize>,
    order_col: Option<usize>,
    limit: bool,
}

/// How one rendering varies what must not matter.
#[derive(Debug, Clone)]
struct Render {
    /// Per token: whitespace choice, case choice, comment choice.
    noise: Vec<(u8, u8, u8)>,
    consts: Vec<Constant>,
    list_len: usize,
}

#[derive(Debug, Clone)]
enum Constant {
    Int(i64),
    Float(f64),
    Str(String),
    EStr(String),
    Dollar(String),
    Bool(bool),
    Null,
}

impl Constant {
    fn sql(&self) -> String {
        match self {
            Constant::Int(i) => i.to_string(),
            Constant::Float(f) => format!("{f:e}"),
            Constant::Str(s) => format!("'{}'", s.replace('\'', "''")),
            Constant::EStr(s) => format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
            Constant::Dollar(s) => format!("$q${}$q$", s.replace('$', "")),
            Constant::Bool(b) => if *b { "TRUE" } else { "false" }.to_string(),
            Constant::Null => "NULL".to_string(),
        }
    }
}

fn constant() -> impl Strategy<Value = Constant> {
    prop_oneof![
        any::<i64>().prop_map(Constant::Int),
        (-1e9f64..1e9).prop_map(Constant::Float),
        ".{0,12}".prop_map(Constant::Str),
        ".{0,12}".prop_map(Constant::EStr),
        "[a-z ;']{0,12}".prop_map(Constant::Dollar),
        any::<bool>().prop_map(Constant::Bool),
        Just(Constant::Null),
    ]
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        0u8..3,
        0..TABLES.len(),
        proptest::collection::vec(0..COLUMNS.len(), 1..4),
        0..COLUMNS.len(),
        0..OPS.len(),
        proptest::option::of(0..COLUMNS.len()),
        proptest::option::of(0..COLUMNS.len()),
        any::<bool>(),
    )
        .prop_map(
            |(kind, table, cols, filter_col, op, in_col, order_col, limit)| Shape {
                kind,
                table,
                cols,
                filter_col,
                op,
                in_col,
                order_col,
                limit,
            },
        )
}

fn render_strategy() -> impl Strategy<Value = Render> {
    (
        proptest::collection::vec((0u8..6, 0u8..3, 0u8..8), 64),
        proptest::collection::vec(constant(), 8),
        1usize..12,
    )
        .prop_map(|(noise, consts, list_len)| Render {
            noise,
            consts,
            list_len,
        })
}

enum Tok {
    /// Keyword or unquoted identifier (case may vary).
    W(String),
    /// Punctuation or operator.
    S(&'static str),
    /// A constant slot.
    C(usize),
    /// A list of constants of the render's length.
    L(usize),
    /// A list of VALUES rows of the render's length.
    Rows(usize),
}

fn w(s: &str) -> Tok {
    Tok::W(s.to_string())
}

fn tokens(s: &Shape) -> Vec<Tok> {
    let mut t = Vec::new();
    let table = TABLES[s.table];
    let cols = |t: &mut Vec<Tok>| {
        for (i, c) in s.cols.iter().enumerate() {
            if i > 0 {
                t.push(Tok::S(","));
            }
            t.push(w(COLUMNS[*c]));
        }
    };
    let filter = |t: &mut Vec<Tok>| {
        t.push(w("WHERE"));
        t.push(w(COLUMNS[s.filter_col]));
        if OPS[s.op] == "LIKE" {
            t.push(w("LIKE"));
        } else {
            t.push(Tok::S(OPS[s.op]));
        }
        t.push(Tok::C(0));
        if let Some(c) = s.in_col {
            t.push(w("AND"));
            t.push(w(COLUMNS[c]));
            t.push(w("IN"));
            t.push(Tok::S("("));
            t.push(Tok::L(1));
            t.push(Tok::S(")"));
        }
    };
    match s.kind {
        0 => {
            t.push(w("SELECT"));
            cols(&mut t);
            t.push(w("FROM"));
            t.push(w(table));
            filter(&mut t);
            if let Some(c) = s.order_col {
                t.push(w("ORDER"));
                t.push(w("BY"));
                t.push(w(COLUMNS[c]));
                t.push(w("DESC"));
            }
            if s.limit {
                t.push(w("LIMIT"));
                t.push(Tok::C(2));
            }
        }
        1 => {
            t.push(w("UPDATE"));
            t.push(w(table));
            t.push(w("SET"));
            t.push(w(COLUMNS[s.cols[0]]));
            t.push(Tok::S("="));
            t.push(Tok::C(3));
            filter(&mut t);
        }
        _ => {
            t.push(w("INSERT"));
            t.push(w("INTO"));
            t.push(w(table));
            t.push(Tok::S("("));
            cols(&mut t);
            t.push(Tok::S(")"));
            t.push(w("VALUES"));
            t.push(Tok::Rows(s.cols.len()));
            if s.limit {
                t.push(w("RETURNING"));
                t.push(w("id"));
            }
        }
    }
    t
}

fn render(s: &Shape, r: &Render) -> String {
    let mut out = String::new();
    for (i, tok) in tokens(s).iter().enumerate() {
        let (ws, case, comment) = r.noise[i % r.noise.len()];
        if i > 0 {
            out.push_str([" ", "  ", "\n", "\t", " \r\n ", " "][ws as usize]);
        }
        match comment {
            0 => out.push_str("/* note; 'x' */ "),
            1 => out.push_str("-- it's a comment\n"),
            _ => {}
        }
        match tok {
            Tok::W(word) => out.push_str(&match case {
                0 => word.to_lowercase(),
                1 => word.to_uppercase(),
                _ => word
                    .chars()
                    .enumerate()
                    .map(|(k, c)| {
                        if k % 2 == 0 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect(),
            }),
            Tok::S(sym) => out.push_str(sym),
            Tok::C(k) => out.push_str(&r.consts[*k].sql()),
            Tok::L(k) => {
                for j in 0..r.list_len {
                    if j > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&r.consts[(k + j) % r.consts.len()].sql());
                }
            }
            Tok::Rows(n) => {
                for row in 0..r.list_len {
                    if row > 0 {
                        out.push_str(",\n ");
                    }
                    out.push('(');
                    for j in 0..*n {
                        if j > 0 {
                            out.push_str(", ");
                        }
                        out.push_str(&r.consts[(row + j) % r.consts.len()].sql());
                    }
                    out.push(')');
                }
            }
        }
    }
    if r.noise[0].2 == 7 {
        out.push_str(" /*route='%2Fdeals',action='show'*/;");
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariant_under_constants_whitespace_comments_case_and_list_length(
        s in shape(), a in render_strategy(), b in render_strategy()
    ) {
        let (x, y) = (render(&s, &a), render(&s, &b));
        let (fx, fy) = (fingerprint(&x), fingerprint(&y));
        prop_assert_eq!(fx.id, fy.id, "\n{}\n-> {}\n{}\n-> {}", x, fx.normalized, y, fy.normalized);
        prop_assert_eq!(fx.id, fingerprint_id(&x));
        // Normalized text never carries constant values of the statement.
        prop_assert!(!fx.normalized.contains("note"));
    }

    #[test]
    fn changes_with_table_column_or_operator(
        s in shape(), r in render_strategy(), which in 0u8..3, delta in 1usize..5
    ) {
        let mut t = s.clone();
        match which {
            0 => t.table = (s.table + delta) % TABLES.len(),
            1 => t.filter_col = (s.filter_col + delta) % COLUMNS.len(),
            _ => t.op = (s.op + delta) % OPS.len(),
        }
        // An UPDATE/INSERT may not use the filter column/operator; only compare where it shows.
        let differs_in_text = tokens(&s).len() != tokens(&t).len()
            || render(&s, &r) != render(&t, &r);
        prop_assume!(differs_in_text);
        let (x, y) = (render(&s, &r), render(&t, &r));
        prop_assert_ne!(fingerprint_id(&x), fingerprint_id(&y), "\n{}\n{}", x, y);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary input (invalid SQL, any Unicode) never panics; both paths agree; splitting
    /// yields trimmed, non-empty slices of the input.
    #[test]
    fn arbitrary_input_is_handled(sql in "(?s).{0,80}|[a-zA-Z0-9 '\"$;:()\\[\\],.*/+=<>!-]{0,80}") {
        let fp = fingerprint(&sql);
        prop_assert_eq!(fp.id, fingerprint_id(&sql));
        for part in vigil_analyzer::split_statements(&sql) {
            prop_assert!(!part.is_empty());
            let pg_ws = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c');
            prop_assert_eq!(part, part.trim_matches(pg_ws));
            prop_assert!(sql.contains(part));
        }
        let _ = vigil_analyzer::analyze(&sql);
    }
}
