//! Normalization: lexer tokens -> normalized tokens -> list collapsing -> a [`Sink`].
//!
//! Stage 1 ([`normalize`]) decides what is a constant the way PostgreSQL's parse tree (and so
//! pg_stat_statements) does: literals become [`NTok::Const`]; `-` directly before a number in
//! operand position is folded into the constant (PostgreSQL's `doNegate`); `NULL`/`TRUE`/`FALSE`
//! after `IS [NOT]` stay keywords (`NullTest`/`BooleanTest`), as does `NULL` after `NOT`;
//! integer ordinals in `ORDER BY`/`GROUP BY` (outside `OVER (...)`) and type modifiers after
//! `::type(...)` stay literal; `!=` is `<>`; trailing `;` are dropped.
//!
//! Stage 2 ([`Collapser`]) collapses the elements of `IN (...)`, `ARRAY[...]` and the rows of
//! `VALUES (...), (...)`: elements whose normalized form equals the first element's are dropped
//! from the hash (the text shows `/*, ... */`), so the list length does not matter.

use super::lexer::{Kind, Lexer, Token};

/// A normalized token.
#[derive(Debug, Clone, Copy)]
pub enum NTok<'a> {
    /// Keyword or unquoted identifier; compared and hashed ASCII-lowercased.
    Word(&'a str),
    /// Quoted identifier, kept exact.
    Quoted(&'a str),
    /// Operator, punctuation or a literal kept as is (ordinal, type modifier).
    Raw(&'a str),
    /// A constant, rendered `$n`.
    Const,
    /// An existing `$n` parameter (hashed without its number).
    Param(&'a str),
}

impl NTok<'_> {
    #[inline(always)]
    fn same(&self, other: &NTok<'_>) -> bool {
        match (self, other) {
            (NTok::Word(a), NTok::Word(b)) => a.eq_ignore_ascii_case(b),
            (NTok::Quoted(a), NTok::Quoted(b)) | (NTok::Raw(a), NTok::Raw(b)) => a == b,
            (NTok::Const, NTok::Const) | (NTok::Param(_), NTok::Param(_)) => true,
            _ => false,
        }
    }

    /// The byte of a one-byte [`NTok::Raw`] (punctuation such as `,` or `(`), else 0.
    #[inline(always)]
    fn punct(&self) -> u8 {
        match self {
            NTok::Raw(r) if r.len() == 1 => r.as_bytes()[0],
            _ => 0,
        }
    }

    #[inline(always)]
    fn is_raw(&self, s: &str) -> bool {
        matches!(self, NTok::Raw(r) if *r == s)
    }

    #[inline(always)]
    fn is_word(&self, s: &str) -> bool {
        matches!(self, NTok::Word(w) if w.eq_ignore_ascii_case(s))
    }
}

/// Receives normalized tokens.
pub trait Sink<'a> {
    fn token(&mut self, t: NTok<'a>);
    /// Elements of a list were collapsed here (text rendering only; never hashed).
    fn collapsed(&mut self) {}
    /// The statement has this `$n` parameter (seen even where a collapsed list drops it).
    fn param(&mut self, _p: &'a str) {}
}

/// Keywords after which a `-` is unary (an expression starts).
const EXPR_START: &[&str] = &[
    "select",
    "where",
    "and",
    "or",
    "not",
    "then",
    "else",
    "when",
    "case",
    "limit",
    "offset",
    "between",
    "having",
    "on",
    "return",
    "returning",
    "distinct",
    "all",
    "any",
    "some",
    "in",
    "like",
    "ilike",
    "is",
    "values",
    "set",
    "using",
    "first",
    "next",
    "escape",
    "by",
    "from",
    "to",
    "with",
    "default",
    "array",
    "similar",
    "exists",
];

/// Words that may follow an `ORDER BY`/`GROUP BY` ordinal.
const AFTER_ORDINAL: &[&str] = &[
    "asc",
    "desc",
    "nulls",
    "limit",
    "offset",
    "fetch",
    "for",
    "having",
    "window",
    "union",
    "intersect",
    "except",
    "using",
    "order",
];

/// Words that end an `ORDER BY`/`GROUP BY` list at its depth.
const END_BY_LIST: &[&str] = &[
    "limit",
    "offset",
    "having",
    "window",
    "for",
    "union",
    "intersect",
    "except",
    "fetch",
    "returning",
    "select",
    "from",
    "where",
    "on",
];

fn word_in(w: &str, set: &[&str]) -> bool {
    set.iter().any(|k| w.eq_ignore_ascii_case(k))
}

fn is_operand(t: Option<NTok<'_>>) -> bool {
    match t {
        None => false,
        Some(NTok::Const | NTok::Param(_) | NTok::Quoted(_)) => true,
        Some(NTok::Raw(r)) => r == ")" || r == "]" || r.as_bytes()[0].is_ascii_digit(),
        Some(NTok::Word(w)) => !word_in(w, EXPR_START),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TypeMod {
    None,
    /// After `::` (and up to three type words).
    Cast(u8),
    /// Inside `::type(...)` opened at this depth.
    Inside(u32),
}

/// Runs stage 1 and 2 over `src` into `sink`; returns the exhausted lexer (for its trailing comment).
pub fn normalize<'a, S: Sink<'a>>(src: &'a str, sink: &mut S) -> Lexer<'a> {
    let mut lx = Lexer::new(src);
    let mut col = Collapser::new();
    let mut prev: Option<NTok<'a>> = None;
    let mut prev2: Option<NTok<'a>> = None;
    let mut depth: u32 = 0;
    let mut by_list: Option<u32> = None;
    let mut window_mask: u64 = 0;
    let mut typemod = TypeMod::None;
    let mut semis: u32 = 0;
    // One inlined `lx.next()` call site; the rare lookahead (ordinals, negative numbers) lexes
    // ahead on a copy of the lexer.
    while let Some(t) = lx.next() {
        if t.kind == Kind::Punct && t.text == ";" {
            semis += 1;
            by_list = None;
            typemod = TypeMod::None;
            depth = 0;
            window_mask = 0;
            continue;
        }
        while semis > 0 {
            col.push(NTok::Raw(";"), sink);
            semis -= 1;
            prev = Some(NTok::Raw(";"));
            prev2 = None;
        }
        let out = match t.kind {
            Kind::Word => {
                let w = t.text;
                let tok = if (w.len() == 4 || w.len() == 5)
                    && matches!(w.as_bytes()[0] | 0x20, b'n' | b't' | b'f')
                    && word_in(w, &["null", "true", "false"])
                {
                    let after_is = prev.is_some_and(|p| p.is_word("is"))
                        || (prev.is_some_and(|p| p.is_word("not"))
                            && prev2.is_some_and(|p| p.is_word("is")));
                    if after_is
                        || (w.eq_ignore_ascii_case("null")
                            && prev.is_some_and(|p| p.is_word("not")))
                    {
                        NTok::Word(w)
                    } else {
                        NTok::Const
                    }
                } else {
                    NTok::Word(w)
                };
                if w.eq_ignore_ascii_case("by")
                    && prev.is_some_and(|p| p.is_word("order") || p.is_word("group"))
                    && (depth >= 64 || window_mask & (1 << depth) == 0)
                {
                    by_list = Some(depth);
                } else if by_list == Some(depth) && word_in(w, END_BY_LIST) {
                    by_list = None;
                }
                typemod = match typemod {
                    TypeMod::Cast(n) if n < 3 => TypeMod::Cast(n + 1),
                    TypeMod::Inside(d) => TypeMod::Inside(d),
                    _ => TypeMod::None,
                };
                tok
            }
            Kind::QuotedIdent => {
                typemod = match typemod {
                    TypeMod::Cast(n) if n < 3 => TypeMod::Cast(n + 1),
                    other => other,
                };
                NTok::Quoted(t.text)
            }
            Kind::Number => {
                let ordinal = by_list == Some(depth)
                    && prev.is_some_and(|p| p.is_word("by") || p.is_raw(","))
                    && t.text.bytes().all(|b| b.is_ascii_digit())
                    && match peek(&lx).0 {
                        None => true,
                        Some(n) if n.kind == Kind::Punct => matches!(n.text, "," | ")" | ";"),
                        Some(n) if n.kind == Kind::Word => word_in(n.text, AFTER_ORDINAL),
                        Some(_) => false,
                    };
                if ordinal || matches!(typemod, TypeMod::Inside(d) if d <= depth) {
                    NTok::Raw(t.text)
                } else {
                    NTok::Const
                }
            }
            Kind::String => NTok::Const,
            Kind::Param => {
                sink.param(t.text);
                NTok::Param(t.text)
            }
            Kind::Op => {
                let negative = t.text == "-"
                    && !is_operand(prev)
                    && !matches!(typemod, TypeMod::Inside(_))
                    && match peek(&lx) {
                        (Some(n), after) if n.kind == Kind::Number => {
                            lx = after; // the number is part of the constant
                            true
                        }
                        _ => false,
                    };
                if negative {
                    NTok::Const
                } else if t.text == "!=" {
                    NTok::Raw("<>")
                } else {
                    NTok::Raw(t.text)
                }
            }
            Kind::Punct => match t.text.as_bytes()[0] {
                b'(' | b'[' => {
                    depth += 1;
                    let paren = t.text == "(";
                    if paren && depth < 64 && prev.is_some_and(|p| p.is_word("over")) {
                        window_mask |= 1 << depth;
                    }
                    if paren && matches!(typemod, TypeMod::Cast(n) if n > 0) {
                        typemod = TypeMod::Inside(depth);
                    }
                    NTok::Raw(t.text)
                }
                b')' | b']' => {
                    if depth < 64 {
                        window_mask &= !(1 << depth);
                    }
                    if by_list == Some(depth) {
                        by_list = None;
                    }
                    if typemod == TypeMod::Inside(depth) {
                        typemod = TypeMod::None;
                    }
                    depth = depth.saturating_sub(1);
                    NTok::Raw(t.text)
                }
                b':' if t.text.len() == 2 => {
                    typemod = TypeMod::Cast(0);
                    NTok::Raw(t.text)
                }
                _ => NTok::Raw(t.text),
            },
        };
        if let TypeMod::Cast(_) = typemod {
            let keep = matches!(t.kind, Kind::Word | Kind::QuotedIdent)
                || (t.kind == Kind::Punct && matches!(t.text, "::" | "[" | "]"));
            if !keep {
                typemod = TypeMod::None;
            }
        }
        col.push(out, sink);
        prev2 = prev;
        prev = Some(out);
    }
    col.finish(sink);
    lx
}

/// The next token and the lexer after it, leaving `lx` as it is.
#[inline(never)]
fn peek<'a>(lx: &Lexer<'a>) -> (Option<Token<'a>>, Lexer<'a>) {
    let mut la = lx.clone();
    (la.next(), la)
}

/// Tokens of a first list element kept inline; longer elements (wide VALUES rows) spill to a
/// `Vec`, the only allocation of the fast path, up to [`MAX_ELEMENT`] tokens.
const CAP: usize = 64;
/// Longest first element considered for collapsing.
const MAX_ELEMENT: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not in a list.
    Off,
    /// VALUES seen; the first row must start with `(`.
    ValuesStart,
    /// Streaming (and recording) the first element.
    First,
    /// After a complete VALUES row: `,` continues, anything else ends the list.
    AfterRow,
    /// Comparing a later element with the first, at this position.
    Compare(usize),
}

/// Stage 2: list collapsing (no allocation unless a first element exceeds [`CAP`] tokens).
pub struct Collapser<'a> {
    phase: Phase,
    values: bool,
    /// The list's closing bracket (`)` or `]`).
    close: u8,
    first: [NTok<'a>; CAP],
    spill: Vec<NTok<'a>>,
    first_len: usize,
    depth: i32,
    extra: u32,
    /// The last emitted token, as far as [`Collapser::trigger`] needs it.
    last: Last,
}

/// What the last emitted token was, for list triggers (`IN (`, `ARRAY[`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    In,
    Array,
    Other,
}

/// What a token starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// `VALUES`: rows follow.
    Values,
    /// `IN (` or `ARRAY[`: elements follow, up to this closing bracket.
    List(u8),
}

impl Default for Collapser<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Collapser<'a> {
    pub fn new() -> Self {
        Collapser {
            phase: Phase::Off,
            values: false,
            close: b')',
            first: [NTok::Const; CAP],
            spill: Vec::new(),
            first_len: 0,
            depth: 0,
            extra: 0,
            last: Last::Other,
        }
    }

    #[inline(always)]
    fn emit<S: Sink<'a>>(&mut self, t: NTok<'a>, sink: &mut S) {
        sink.token(t);
        self.last = match t {
            NTok::Word(w) if w.len() == 2 && w.eq_ignore_ascii_case("in") => Last::In,
            NTok::Word(w) if w.len() == 5 && w.eq_ignore_ascii_case("array") => Last::Array,
            _ => Last::Other,
        };
    }

    fn start(&mut self, values: bool, close: u8) {
        self.phase = if values {
            Phase::ValuesStart
        } else {
            Phase::First
        };
        self.values = values;
        self.close = close;
        self.first_len = 0;
        self.spill.clear();
        self.depth = 0;
        self.extra = 0;
    }

    fn record(&mut self, t: NTok<'a>) -> bool {
        if self.first_len < CAP {
            self.first[self.first_len] = t;
        } else if self.first_len < MAX_ELEMENT {
            self.spill.push(t);
        } else {
            return false;
        }
        self.first_len += 1;
        true
    }

    /// Does `t` start a collapsible list?
    #[inline(always)]
    fn trigger(&self, t: NTok<'a>) -> Option<Trigger> {
        match (t, self.last) {
            (NTok::Raw("("), Last::In) => Some(Trigger::List(b')')),
            (NTok::Raw("["), Last::Array) => Some(Trigger::List(b']')),
            (NTok::Word(w), _) if w.len() == 6 && w.eq_ignore_ascii_case("values") => {
                Some(Trigger::Values)
            }
            _ => None,
        }
    }

    #[inline]
    fn first_at(&self, i: usize) -> NTok<'a> {
        if i < CAP {
            self.first[i]
        } else {
            self.spill[i - CAP]
        }
    }

    #[inline(always)]
    fn nest(&mut self, t: &NTok<'_>) {
        match t.punct() {
            b'(' | b'[' => self.depth += 1,
            b')' | b']' => self.depth -= 1,
            _ => {}
        }
    }

    /// Emits what a broken comparison had held back: `extra` copies of the first element and
    /// the matched prefix `pos` of the current one, each after its comma.
    fn replay<S: Sink<'a>>(&mut self, pos: usize, sink: &mut S) {
        for _ in 0..self.extra {
            self.emit(NTok::Raw(","), sink);
            for i in 0..self.first_len {
                self.emit(self.first_at(i), sink);
            }
        }
        self.emit(NTok::Raw(","), sink);
        for i in 0..pos {
            self.emit(self.first_at(i), sink);
        }
        self.phase = Phase::Off;
    }

    /// Feeds one token. The hot paths are inlined: outside lists, a token that cannot start one
    /// goes straight to the sink; inside a list, a later element's token that matches the first
    /// element's (or the `,` after a complete match) is only counted. Everything else takes
    /// [`Collapser::push_list`].
    #[inline(always)]
    pub fn push<S: Sink<'a>>(&mut self, t: NTok<'a>, sink: &mut S) {
        match self.phase {
            Phase::Off => {
                let may_trigger = match t {
                    NTok::Raw(r) => r.len() == 1 && self.last != Last::Other,
                    NTok::Word(w) => w.len() == 6 && w.as_bytes()[0] | 0x20 == b'v',
                    _ => false,
                };
                if !may_trigger {
                    self.emit(t, sink);
                    return;
                }
            }
            Phase::Compare(pos) => {
                let punct = t.punct();
                if !self.values && self.depth == 0 && (punct == b',' || punct == self.close) {
                    // An element ends: counted if it matched the first one completely.
                    if punct == b',' && pos == self.first_len {
                        self.extra += 1;
                        self.phase = Phase::Compare(0);
                        return;
                    }
                } else if pos < self.first_len && self.first_at(pos).same(&t) {
                    self.nest(&t);
                    if !self.values || self.depth != 0 {
                        self.phase = Phase::Compare(pos + 1);
                        return;
                    }
                    if pos + 1 == self.first_len {
                        // A VALUES row matched the first row.
                        self.extra += 1;
                        self.phase = Phase::AfterRow;
                    } else {
                        self.replay(pos + 1, sink);
                    }
                    return;
                }
            }
            Phase::AfterRow if t.is_raw(",") => {
                self.phase = Phase::Compare(0);
                return;
            }
            _ => {}
        }
        self.push_list(t, sink);
    }

    #[inline(never)]
    fn push_list<S: Sink<'a>>(&mut self, t: NTok<'a>, sink: &mut S) {
        match self.phase {
            Phase::Off => {
                let trigger = self.trigger(t);
                self.emit(t, sink);
                match trigger {
                    Some(Trigger::Values) => self.start(true, b')'),
                    Some(Trigger::List(close)) => self.start(false, close),
                    None => {}
                }
            }
            Phase::ValuesStart => {
                if t.is_raw("(") {
                    self.phase = Phase::First;
                    self.push(t, sink);
                } else {
                    self.phase = Phase::Off;
                    self.push(t, sink);
                }
            }
            Phase::First => {
                if self.trigger(t).is_some() {
                    // A nested list (e.g. `IN (SELECT .. WHERE x IN (1, 2))`): collapse the inner
                    // one; the outer first element is streamed as is.
                    self.phase = Phase::Off;
                    self.push(t, sink);
                    return;
                }
                if !self.values && self.depth == 0 && (t.is_raw(",") || t.punct() == self.close) {
                    if t.is_raw(",") {
                        self.phase = Phase::Compare(0);
                    } else {
                        self.phase = Phase::Off;
                        self.emit(t, sink);
                    }
                    return;
                }
                self.emit(t, sink);
                if !self.record(t) {
                    self.phase = Phase::Off;
                    return;
                }
                self.nest(&t);
                if self.values && self.depth == 0 {
                    self.phase = Phase::AfterRow;
                }
            }
            Phase::AfterRow => {
                if t.is_raw(",") {
                    self.phase = Phase::Compare(0);
                } else {
                    if self.extra > 0 {
                        sink.collapsed();
                    }
                    self.phase = Phase::Off;
                    self.push(t, sink);
                }
            }
            Phase::Compare(pos) => {
                if !self.values && self.depth == 0 && (t.is_raw(",") || t.punct() == self.close) {
                    if pos == self.first_len {
                        self.extra += 1;
                        if t.is_raw(",") {
                            self.phase = Phase::Compare(0);
                        } else {
                            sink.collapsed();
                            self.phase = Phase::Off;
                            self.emit(t, sink);
                        }
                    } else {
                        self.replay(pos, sink);
                        self.push(t, sink);
                    }
                    return;
                }
                if pos < self.first_len && self.first_at(pos).same(&t) {
                    self.nest(&t);
                    if self.values && self.depth == 0 {
                        if pos + 1 == self.first_len {
                            self.extra += 1;
                            self.phase = Phase::AfterRow;
                        } else {
                            self.replay(pos + 1, sink);
                        }
                    } else {
                        self.phase = Phase::Compare(pos + 1);
                    }
                } else {
                    self.replay(pos, sink);
                    self.push(t, sink);
                }
            }
        }
    }

    pub fn finish<S: Sink<'a>>(&mut self, sink: &mut S) {
        match self.phase {
            Phase::Compare(pos) => self.replay(pos, sink),
            Phase::AfterRow if self.extra > 0 => sink.collapsed(),
            _ => {}
        }
        self.phase = Phase::Off;
    }
}
