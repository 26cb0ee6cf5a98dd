//! One-pass PostgreSQL lexer: splits SQL text into borrowed tokens without allocating.
//!
//! It follows PostgreSQL's scanner (`scan.l`) closely enough to fingerprint and split statements:
//! identifiers (unquoted, `"quoted"`, `U&"unicode"`), every constant form (numbers incl. `1e5`,
//! `.5`, `0x1F`, `1_000`; `'standard'` strings with `''`; `E'\''` strings; `$tag$dollar$tag$`;
//! `U&'..'` with `UESCAPE`; `B''`/`X''`/`N''`), `$n` parameters, operators (with the rule that a
//! multi-character operator cannot end in `+`/`-` unless it contains `~!@#%^&|`?`), punctuation,
//! and comments (`--` and nested `/* */`), which are skipped but remembered. It never fails:
//! unterminated strings, identifiers and comments run to the end of the input.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Unquoted identifier or keyword (case-insensitive).
    Word,
    /// `"Quoted"` or `U&"quoted"` identifier (kept exact).
    QuotedIdent,
    /// Numeric literal.
    Number,
    /// Any string-like literal (standard, `E''`, `U&''`, `B''`, `X''`, `N''`, dollar-quoted).
    String,
    /// `$n` positional parameter.
    Param,
    /// Operator (`=`, `<>`, `||`, `->>`, ...).
    Op,
    /// Punctuation: `( ) [ ] , ; . :` and `::`.
    Punct,
}

/// A token: its kind and its exact text in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
    /// Byte offset of the token in the input.
    pub start: usize,
}

/// The lexer; an iterator over [`Token`]s.
#[derive(Clone)]
pub struct Lexer<'a> {
    src: &'a str,
    b: &'a [u8],
    pos: usize,
    /// Byte range of the last comment that no token (other than `;`) followed.
    trailing_comment: Option<(usize, usize)>,
}

const START: u8 = 1;
const CONT: u8 = 2;
const OP: u8 = 4;
/// Whitespace, or `-`/`/` (which may start a comment).
const TRIV: u8 = 8;
/// One-byte punctuation that never starts a longer token: `( ) [ ] , ;`.
const PUNCT: u8 = 16;

/// Character classes by byte (identifier start/continuation, operator character).
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            t[i] = START | CONT;
        } else if c.is_ascii_digit() || c == b'$' {
            t[i] = CONT;
        }
        if matches!(
            c,
            b'+' | b'-'
                | b'*'
                | b'/'
                | b'<'
                | b'>'
                | b'='
                | b'~'
                | b'!'
                | b'@'
                | b'#'
                | b'%'
                | b'^'
                | b'&'
                | b'|'
                | b'`'
                | b'?'
        ) {
            t[i] = OP;
        }
        if matches!(
            c,
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c' | b'-' | b'/'
        ) {
            t[i] |= TRIV;
        }
        if matches!(c, b'(' | b')' | b'[' | b']' | b',' | b';') {
            t[i] |= PUNCT;
        }
        i += 1;
    }
    t
};

#[inline(always)]
fn is_ident_start(c: u8) -> bool {
    CLASS[c as usize] & START != 0
}

#[inline(always)]
fn is_ident_cont(c: u8) -> bool {
    CLASS[c as usize] & CONT != 0
}

#[inline(always)]
fn is_op_char(c: u8) -> bool {
    CLASS[c as usize] & OP != 0
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str) -> Self {
        Lexer {
            src,
            b: src.as_bytes(),
            pos: 0,
            trailing_comment: None,
        }
    }

    /// The last comment in the input if only whitespace and `;` follow it (a sqlcommenter
    /// comment), as the text between `/*` and `*/`. Meaningful once the lexer is exhausted.
    pub fn trailing_comment(&self) -> Option<&'a str> {
        let (s, e) = self.trailing_comment?;
        let text = &self.src[s..e];
        let inner = text.strip_prefix("/*")?;
        Some(inner.strip_suffix("*/").unwrap_or(inner))
    }

    #[inline]
    fn peek(&self, off: usize) -> u8 {
        *self.b.get(self.pos + off).unwrap_or(&0)
    }

    /// Skips whitespace and comments; returns true if the skipped whitespace held a newline.
    fn skip_trivia(&mut self) -> bool {
        let mut newline = false;
        loop {
            let c = self.peek(0);
            match c {
                b' ' | b'\t' | b'\r' | b'\x0c' | b'\x0b' => self.pos += 1,
                b'\n' => {
                    newline = true;
                    self.pos += 1;
                }
                b'-' if self.peek(1) == b'-' => {
                    while self.pos < self.b.len() && self.b[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                b'/' if self.peek(1) == b'*' => {
                    let start = self.pos;
                    self.skip_block_comment();
                    self.trailing_comment = Some((start, self.pos));
                }
                _ => return newline,
            }
        }
    }

    fn skip_block_comment(&mut self) {
        // PostgreSQL block comments nest.
        let mut depth = 0usize;
        while self.pos < self.b.len() {
            if self.peek(0) == b'/' && self.peek(1) == b'*' {
                depth += 1;
                self.pos += 2;
            } else if self.peek(0) == b'*' && self.peek(1) == b'/' {
                depth -= 1;
                self.pos += 2;
                if depth == 0 {
                    return;
                }
            } else {
                self.pos += 1;
            }
        }
    }

    /// Scans a quoted body starting after the opening quote; `backslash` enables `\x` escapes.
    fn scan_quoted(&mut self, quote: u8, backslash: bool) {
        while self.pos < self.b.len() {
            let c = self.b[self.pos];
            if backslash && c == b'\\' {
                self.pos += 2;
            } else if c == quote {
                if self.peek(1) == quote {
                    self.pos += 2;
                } else {
                    self.pos += 1;
                    return;
                }
            } else {
                self.pos += 1;
            }
        }
        self.pos = self.b.len();
    }

    /// A string constant whose opening quote is at `self.pos`; also swallows PostgreSQL's
    /// continuation (`'a'` newline `'b'` is one constant).
    fn scan_string(&mut self, backslash: bool) {
        loop {
            self.pos += 1; // opening quote
            self.scan_quoted(b'\'', backslash);
            let save = self.pos;
            let mut newline = false;
            while let c @ (b' ' | b'\t' | b'\r' | b'\n' | b'\x0c') = self.peek(0) {
                newline |= c == b'\n';
                self.pos += 1;
            }
            if !(newline && self.peek(0) == b'\'') {
                self.pos = save;
                return;
            }
        }
    }

    /// At `$`: a dollar-quote opener `$tag$` returns its length.
    fn dollar_tag_len(&self) -> Option<usize> {
        let mut i = 1;
        let first = self.peek(1);
        if first == b'$' {
            return Some(2);
        }
        if !is_ident_start(first) {
            return None;
        }
        while is_ident_cont(self.peek(i)) && self.peek(i) != b'$' {
            i += 1;
        }
        (self.peek(i) == b'$').then_some(i + 1)
    }

    fn scan_number(&mut self) {
        let c0 = self.peek(0);
        if c0 == b'0' && matches!(self.peek(1) | 0x20, b'x' | b'o' | b'b') {
            self.pos += 2;
            while self.peek(0).is_ascii_hexdigit() || self.peek(0) == b'_' {
                self.pos += 1;
            }
            return;
        }
        while self.peek(0).is_ascii_digit()
            || (self.peek(0) == b'_' && self.peek(1).is_ascii_digit())
        {
            self.pos += 1;
        }
        if self.peek(0) == b'.' && self.peek(1) != b'.' {
            self.pos += 1;
            while self.peek(0).is_ascii_digit() || self.peek(0) == b'_' {
                self.pos += 1;
            }
        }
        if self.peek(0) | 0x20 == b'e' {
            let (a, b) = (self.peek(1), self.peek(2));
            if a.is_ascii_digit() || ((a == b'+' || a == b'-') && b.is_ascii_digit()) {
                self.pos += 2;
                while self.peek(0).is_ascii_digit() {
                    self.pos += 1;
                }
            }
        }
    }

    fn scan_operator(&mut self) {
        let start = self.pos;
        while self.pos < self.b.len() && is_op_char(self.b[self.pos]) {
            // A comment start ends the operator.
            if self.pos > start
                && ((self.b[self.pos] == b'-' && self.peek(1) == b'-')
                    || (self.b[self.pos] == b'/' && self.peek(1) == b'*'))
            {
                break;
            }
            self.pos += 1;
        }
        let mut end = self.pos;
        if end - start > 1 {
            let op = &self.b[start..end];
            let special = op.iter().any(|c| {
                matches!(
                    c,
                    b'~' | b'!' | b'@' | b'#' | b'%' | b'^' | b'&' | b'|' | b'`' | b'?'
                )
            });
            if !special {
                while end - start > 1 && matches!(self.b[end - 1], b'+' | b'-') {
                    end -= 1;
                }
            }
        }
        self.pos = end;
    }

    fn tok(&self, kind: Kind, start: usize) -> Token<'a> {
        Token {
            kind,
            text: &self.src[start..self.pos],
            start,
        }
    }

    /// Skips `UESCAPE 'c'` after a `U&` literal or identifier.
    fn skip_uescape(&mut self) {
        let save = self.pos;
        self.skip_trivia();
        let rest = &self.b[self.pos..];
        if rest.len() >= 7
            && rest[..7].eq_ignore_ascii_case(b"uescape")
            && !is_ident_cont(self.peek(7))
        {
            self.pos += 7;
            self.skip_trivia();
            if self.peek(0) == b'\'' {
                self.pos += 1;
                self.scan_quoted(b'\'', false);
                return;
            }
        }
        self.pos = save;
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    #[inline(always)]
    fn next(&mut self) -> Option<Token<'a>> {
        let b = self.b;
        let mut c = *b.get(self.pos)?;
        if CLASS[c as usize] & TRIV != 0 {
            let c1 = b.get(self.pos + 1).copied().unwrap_or(0);
            if c == b' ' && CLASS[c1 as usize] & TRIV == 0 {
                self.pos += 1;
            } else {
                self.skip_trivia();
            }
            c = *b.get(self.pos)?;
        }
        let start = self.pos;
        let c1 = b.get(start + 1).copied().unwrap_or(0);
        // Fast paths: an identifier or keyword that is not a string prefix (`E'`, `U&'`...), and
        // one-byte punctuation.
        let class = CLASS[c as usize];
        if class & START != 0 && c1 != b'\'' && c1 != b'&' {
            let mut p = start + 1;
            while p < b.len() && is_ident_cont(b[p]) {
                p += 1;
            }
            self.pos = p;
            self.trailing_comment = None;
            return Some(self.tok(Kind::Word, start));
        }
        // `.` not starting a number, and a one-character operator (a `-`/`/` here does not start
        // a comment: the trivia skip above saw it).
        let kind = if class & PUNCT != 0 || (c == b'.' && !c1.is_ascii_digit()) {
            Kind::Punct
        } else if class & OP != 0 && !is_op_char(c1) {
            Kind::Op
        } else {
            return self.next_other(start, c, c1);
        };
        self.pos = start + 1;
        if c != b';' {
            self.trailing_comment = None;
        }
        Some(self.tok(kind, start))
    }
}

impl<'a> Lexer<'a> {
    /// [`Lexer::next`] for everything but words and one-byte punctuation.
    #[inline(never)]
    fn next_other(&mut self, start: usize, c: u8, c1: u8) -> Option<Token<'a>> {
        let kind = match c {
            b'\'' => {
                self.scan_string(false);
                Kind::String
            }
            b'"' => {
                self.pos += 1;
                self.scan_quoted(b'"', false);
                Kind::QuotedIdent
            }
            b'e' | b'E' if c1 == b'\'' => {
                self.pos += 1;
                self.scan_string(true);
                Kind::String
            }
            b'b' | b'B' | b'x' | b'X' | b'n' | b'N' if c1 == b'\'' => {
                self.pos += 1;
                self.scan_string(false);
                Kind::String
            }
            b'u' | b'U' if c1 == b'&' && (self.peek(2) == b'\'' || self.peek(2) == b'"') => {
                self.pos += 2;
                let k = if self.peek(0) == b'\'' {
                    self.scan_string(false);
                    Kind::String
                } else {
                    self.pos += 1;
                    self.scan_quoted(b'"', false);
                    Kind::QuotedIdent
                };
                let end = self.pos;
                self.skip_uescape();
                self.trailing_comment = None;
                return Some(Token {
                    kind: k,
                    text: &self.src[start..end],
                    start,
                });
            }
            b'$' if c1.is_ascii_digit() => {
                self.pos += 1;
                while self.peek(0).is_ascii_digit() {
                    self.pos += 1;
                }
                Kind::Param
            }
            b'$' => match self.dollar_tag_len() {
                Some(n) => {
                    let tag = &self.src[start..start + n];
                    self.pos += n;
                    match self.src[self.pos..].find(tag) {
                        Some(i) => self.pos += i + n,
                        None => self.pos = self.b.len(),
                    }
                    Kind::String
                }
                None => {
                    self.pos += 1;
                    Kind::Punct
                }
            },
            b'0'..=b'9' => {
                self.scan_number();
                Kind::Number
            }
            b'.' if c1.is_ascii_digit() => {
                self.scan_number();
                Kind::Number
            }
            b':' if c1 == b':' => {
                self.pos += 2;
                Kind::Punct
            }
            b':' if c1 == b'=' => {
                self.pos += 2;
                Kind::Op
            }
            b'(' | b')' | b'[' | b']' | b',' | b';' | b'.' | b':' => {
                self.pos += 1;
                Kind::Punct
            }
            c if is_ident_start(c) => {
                let b = self.b;
                let mut p = start + 1;
                while p < b.len() && is_ident_cont(b[p]) {
                    p += 1;
                }
                self.pos = p;
                Kind::Word
            }
            c if is_op_char(c) => {
                self.scan_operator();
                Kind::Op
            }
            _ => {
                // Any other byte (ASCII control, `\`, `{`...): a one-byte punctuation token.
                self.pos += 1;
                Kind::Punct
            }
        };
        if !(kind == Kind::Punct && c == b';') {
            self.trailing_comment = None;
        }
        Some(self.tok(kind, start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<(Kind, &str)> {
        Lexer::new(sql).map(|t| (t.kind, t.text)).collect()
    }

    #[test]
    fn lexes_constant_forms() {
        use Kind::*;
        assert_eq!(
            kinds("1 1.5 .5 1e5 1.5e-3 0x1F 1_000"),
            vec![
                (Number, "1"),
                (Number, "1.5"),
                (Number, ".5"),
                (Number, "1e5"),
                (Number, "1.5e-3"),
                (Number, "0x1F"),
                (Number, "1_000")
            ]
        );
        assert_eq!(kinds("'it''s'"), vec![(String, "'it''s'")]);
        assert_eq!(kinds(r"E'a\'b'"), vec![(String, r"E'a\'b'")]);
        assert_eq!(
            kinds("$$a'b$$ $x$ $ $x$"),
            vec![(String, "$$a'b$$"), (String, "$x$ $ $x$")]
        );
        assert_eq!(
            kinds("U&'d\\0061t' UESCAPE '\\' x"),
            vec![(String, "U&'d\\0061t'"), (Word, "x")]
        );
        assert_eq!(
            kinds("B'101' X'1F' N'x'"),
            vec![(String, "B'101'"), (String, "X'1F'"), (String, "N'x'")]
        );
        assert_eq!(
            kinds("'a'\n  'b' 'c'"),
            vec![(String, "'a'\n  'b'"), (String, "'c'")]
        );
        assert_eq!(kinds("$1 $23"), vec![(Param, "$1"), (Param, "$23")]);
    }

    #[test]
    fn lexes_operators_comments_and_identifiers() {
        use Kind::*;
        assert_eq!(
            kinds("a=-1"),
            vec![(Word, "a"), (Op, "="), (Op, "-"), (Number, "1")]
        );
        assert_eq!(kinds("a @- b"), vec![(Word, "a"), (Op, "@-"), (Word, "b")]);
        assert_eq!(
            kinds("a->>'k'"),
            vec![(Word, "a"), (Op, "->>"), (String, "'k'")]
        );
        assert_eq!(
            kinds("x::text -- c\n/* a /* nested */ b */ \"Q\"\"x\""),
            vec![
                (Word, "x"),
                (Punct, "::"),
                (Word, "text"),
                (QuotedIdent, "\"Q\"\"x\"")
            ]
        );
        let mut lx = Lexer::new("select 1 /*route='%2Fa'*/ ;");
        while lx.next().is_some() {}
        assert_eq!(lx.trailing_comment(), Some("route='%2Fa'"));
        let mut lx = Lexer::new("select /*x*/ 1");
        while lx.next().is_some() {}
        assert_eq!(lx.trailing_comment(), None);
    }

    #[test]
    fn unterminated_input_runs_to_end() {
        assert_eq!(
            kinds("select 'abc"),
            vec![(Kind::Word, "select"), (Kind::String, "'abc")]
        );
        assert_eq!(
            kinds("select \"abc"),
            vec![(Kind::Word, "select"), (Kind::QuotedIdent, "\"abc")]
        );
        assert_eq!(
            kinds("select $a$ abc"),
            vec![(Kind::Word, "select"), (Kind::String, "$a$ abc")]
        );
        assert_eq!(kinds("select /* abc"), vec![(Kind::Word, "select")]);
    }
}
