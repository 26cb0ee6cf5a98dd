//! Sinks for normalized tokens: the fingerprint hash ([`HashSink`]) and the normalized text
//! ([`TextSink`], which also hashes).
//!
//! # Fingerprint hash (stable, version 1)
//! Tokens are encoded as 64-bit words (keywords and unquoted identifiers ASCII-lowercased; tags:
//! 1 keyword or unquoted identifier, 2 quoted identifier, 3 operator/punctuation/kept literal,
//! 4 constant, 5 parameter; constants and parameters have no bytes). A token of at most 7 bytes
//! is one word: `tag << 4 | len | bytes << 8` (bytes little-endian, zero-padded). A longer one
//! is a header word `tag << 4 | 8 | len << 8` followed by its bytes in little-endian 8-byte
//! words, the last one zero-padded. The encoding is injective. Each word `w` is mixed as `h = fold(h ^ w, K)` where
//! `fold(a, b) = lo64(a * b) ^ hi64(a * b)` (128-bit product) and `K = 0x9E3779B97F4A7C15`,
//! starting from `h = 0x243F6A8885A308D3`. The result is `fmix64(h ^ token_count)` (MurmurHash3's
//! finalizer). Only integer arithmetic with explicit byte order: the value is the same on every
//! run and machine, and changing it is a breaking change (stored statistics are keyed by it).

use super::normalize::{NTok, Sink};

const K: u64 = 0x9E37_79B9_7F4A_7C15;
const SEED: u64 = 0x243F_6A88_85A3_08D3;

// Token tags.
const WORD: u8 = 1;
const QUOTED: u8 = 2;
const RAW: u8 = 3;
const CONST: u8 = 4;
const PARAM: u8 = 5;

/// The streaming fingerprint hasher.
#[derive(Debug, Clone)]
pub struct HashSink {
    h: u64,
    count: u64,
}

impl Default for HashSink {
    fn default() -> Self {
        HashSink { h: SEED, count: 0 }
    }
}

#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = (a as u128).wrapping_mul(b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Little-endian load of the first 8 bytes of `b` (at least 8 long).
#[inline(always)]
fn le8(b: &[u8]) -> u64 {
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Little-endian load of up to 8 bytes, zero-padded (overlapping loads, no copy).
#[inline(always)]
fn load_le(b: &[u8]) -> u64 {
    let n = b.len();
    if n >= 8 {
        le8(b)
    } else if n >= 4 {
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64;
        let hi = u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]) as u64;
        lo | hi << ((n - 4) * 8)
    } else if n > 0 {
        b[0] as u64 | (b[n / 2] as u64) << (n / 2 * 8) | (b[n - 1] as u64) << ((n - 1) * 8)
    } else {
        0
    }
}

/// ASCII-lowercases the 8 bytes packed in `w` (SWAR; bytes >= 0x80 untouched).
#[inline(always)]
fn lower8(w: u64) -> u64 {
    const HI: u64 = 0x8080_8080_8080_8080;
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let seven = w & LO7;
    let ge_a = seven.wrapping_add(0x3f3f_3f3f_3f3f_3f3f); // high bit if byte >= 'A' (0x41)
    let gt_z = seven.wrapping_add(0x2525_2525_2525_2525); // high bit if byte > 'Z' (0x5a)
    let upper = ge_a & !gt_z & !w & HI;
    w | (upper >> 2)
}

impl HashSink {
    #[inline(always)]
    fn mix(&mut self, w: u64) {
        self.h = fold(self.h ^ w, K);
    }

    /// A short token (`n` <= 7 bytes, loaded in `w` and lowercased where its tag asks): one word
    /// `tag << 4 | len` + the content bytes.
    #[inline(always)]
    fn short(&mut self, tag: u8, n: usize, w: u64) {
        self.count += 1;
        self.mix((tag as u64) << 4 | n as u64 | w << 8);
    }

    #[inline(always)]
    fn bytes(&mut self, tag: u8, b: &[u8], lower: bool) {
        let n = b.len();
        if n <= 7 {
            let w = load_le(b);
            self.short(tag, n, if lower { lower8(w) } else { w });
            return;
        }
        self.count += 1;
        self.mix((tag as u64) << 4 | 8 | (n as u64) << 8);
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            let w = le8(c);
            self.mix(if lower { lower8(w) } else { w });
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let w = load_le(rest);
            self.mix(if lower { lower8(w) } else { w });
        }
    }

    #[inline(always)]
    pub fn add(&mut self, t: NTok<'_>) {
        match t {
            NTok::Word(w) => self.bytes(WORD, w.as_bytes(), true),
            NTok::Quoted(q) => self.bytes(QUOTED, q.as_bytes(), false),
            NTok::Raw(r) => self.bytes(RAW, r.as_bytes(), false),
            NTok::Const => self.short(CONST, 0, 0),
            NTok::Param(_) => self.short(PARAM, 0, 0),
        }
    }

    /// The 64-bit fingerprint.
    pub fn finish(&self) -> u64 {
        let mut h = self.h ^ self.count;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

impl<'a> Sink<'a> for HashSink {
    #[inline(always)]
    fn token(&mut self, t: NTok<'a>) {
        self.add(t);
    }
}

/// Is `w` a word after which `(` is preceded by a space in the text (a keyword rather than a
/// function)?
fn space_before_paren(w: &str) -> bool {
    let n = w.len();
    if !(2..=MAX_PAREN_KEYWORD).contains(&n) {
        return false;
    }
    let mut buf = [0u8; MAX_PAREN_KEYWORD];
    buf[..n].copy_from_slice(w.as_bytes());
    buf.make_ascii_lowercase();
    matches!(
        &buf[..n],
        b"in"
            | b"values"
            | b"as"
            | b"on"
            | b"using"
            | b"from"
            | b"join"
            | b"where"
            | b"and"
            | b"or"
            | b"not"
            | b"select"
            | b"into"
            | b"when"
            | b"then"
            | b"else"
            | b"set"
            | b"by"
            | b"over"
            | b"exists"
            | b"with"
            | b"returning"
            | b"union"
            | b"table"
            | b"conflict"
            | b"filter"
            | b"lateral"
            | b"is"
            | b"between"
            | b"like"
            | b"ilike"
            | b"case"
            | b"distinct"
    )
}

/// The longest word [`space_before_paren`] knows (`returning`).
const MAX_PAREN_KEYWORD: usize = 9;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Prev {
    Start,
    /// `(`, `[`, `.`, `::`: no space after.
    Glue,
    Word,
    /// A word after which `(` takes a space.
    Keyword,
    Other,
}

/// Builds the normalized text (and the hash, so both come from one pass).
pub struct TextSink<'a> {
    /// The text so far: whole `&str` tokens and ASCII, so always UTF-8.
    out: Vec<u8>,
    last_word: &'a str,
    pub hash: HashSink,
    first_const: u32,
    next_const: u32,
    /// The highest `$n` parameter number in the statement.
    pub max_param: u32,
    prev: Prev,
    after_into: bool,
}

impl TextSink<'_> {
    /// `first_const`: the number of the first `$n` given to a constant (after existing params).
    pub fn new(capacity: usize, first_const: u32) -> Self {
        TextSink {
            out: Vec::with_capacity(capacity),
            hash: HashSink::default(),
            first_const,
            next_const: first_const,
            max_param: 0,
            prev: Prev::Start,
            after_into: false,
            last_word: "",
        }
    }

    /// Were constants numbered (`$n`) in the text?
    pub fn numbered_constants(&self) -> bool {
        self.next_const > self.first_const
    }

    /// The normalized text.
    pub fn into_text(self) -> String {
        String::from_utf8(self.out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// Hashes and appends a token's bytes (tag as in [`HashSink`]); a short token is loaded and
    /// lowercased once for both.
    #[inline(always)]
    fn hash_push(&mut self, tag: u8, b: &[u8], lower: bool) {
        let n = b.len();
        if n <= 7 {
            let w = load_le(b);
            let w = if lower { lower8(w) } else { w };
            self.hash.short(tag, n, w);
            let start = self.out.len();
            self.out.extend_from_slice(&w.to_le_bytes());
            self.out.truncate(start + n);
        } else {
            self.hash.bytes(tag, b, lower);
            self.push(b, lower);
        }
    }

    /// Appends `b`, ASCII-lowercased if `lower`, in 8-byte words (no `memcpy` call, no per-byte
    /// loop): a short token is one word cut back to its length; a longer one ends with its last 8
    /// bytes written over the tail.
    #[inline(always)]
    fn push(&mut self, b: &[u8], lower: bool) {
        let low = |w: u64| if lower { lower8(w) } else { w };
        let n = b.len();
        let start = self.out.len();
        if n <= 8 {
            self.out.extend_from_slice(&low(load_le(b)).to_le_bytes());
            self.out.truncate(start + n);
            return;
        }
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            self.out.extend_from_slice(&low(le8(c)).to_le_bytes());
        }
        if !chunks.remainder().is_empty() {
            self.out.truncate(start + n - 8);
            self.out
                .extend_from_slice(&low(le8(&b[n - 8..])).to_le_bytes());
        }
    }

    fn space_before(&self, t: &NTok<'_>) -> bool {
        if matches!(self.prev, Prev::Start | Prev::Glue) {
            return false;
        }
        match t {
            NTok::Raw(r) => match r.as_bytes() {
                [b')' | b']' | b',' | b';' | b'.' | b'['] | b"::" => false,
                b"(" => !matches!(self.prev, Prev::Word) || space_before_paren(self.last_word),
                _ => true,
            },
            _ => true,
        }
    }
}

impl<'a> Sink<'a> for TextSink<'a> {
    #[inline(always)]
    fn token(&mut self, t: NTok<'a>) {
        if self.space_before(&t) {
            self.out.push(b' ');
        }
        self.prev = Prev::Other;
        match t {
            NTok::Word(w) => {
                self.hash_push(WORD, w.as_bytes(), true);
                // `(` after a keyword, or after the table after INTO (`insert into t (a, b)`),
                // takes a space; decided when a `(` follows.
                self.prev = if self.after_into {
                    Prev::Keyword
                } else {
                    Prev::Word
                };
                self.last_word = w;
                self.after_into = w.eq_ignore_ascii_case("into");
            }
            NTok::Quoted(q) => {
                self.hash_push(QUOTED, q.as_bytes(), false);
                self.prev = Prev::Word;
            }
            NTok::Raw(r) => {
                self.hash_push(RAW, r.as_bytes(), false);
                if matches!(r.as_bytes(), b"(" | b"[" | b"." | b"::") {
                    self.prev = Prev::Glue;
                }
            }
            NTok::Const => {
                self.hash.add(t);
                self.out.push(b'$');
                let n = itoa(self.next_const);
                self.out.extend_from_slice(n.as_bytes());
                self.next_const += 1;
            }
            NTok::Param(p) => {
                self.hash.add(t);
                self.push(p.as_bytes(), false);
            }
        }
    }

    fn collapsed(&mut self) {
        self.out.extend_from_slice(b" /*, ... */");
    }

    fn param(&mut self, p: &'a str) {
        if let Ok(n) = p[1..].parse::<u32>() {
            self.max_param = self.max_param.max(n);
        }
    }
}

/// Small integer formatting without `format!`.
fn itoa(mut n: u32) -> ItoaBuf {
    let mut buf = ItoaBuf {
        b: [0; 10],
        start: 10,
    };
    loop {
        buf.start -= 1;
        buf.b[buf.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return buf;
        }
    }
}

struct ItoaBuf {
    b: [u8; 10],
    start: usize,
}

impl ItoaBuf {
    fn as_bytes(&self) -> &[u8] {
        &self.b[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower8_lowercases_ascii_only() {
        let w = u64::from_le_bytes(*b"SeLeCT@[");
        assert_eq!(lower8(w).to_le_bytes(), *b"select@[");
        let w = u64::from_le_bytes([b'Z', b'A', 0xC3, 0x89, b'z', b'`', b'{', b'_']);
        assert_eq!(
            lower8(w).to_le_bytes(),
            [b'z', b'a', 0xC3, 0x89, b'z', b'`', b'{', b'_']
        );
    }

    #[test]
    fn load_le_pads_with_zeros() {
        for n in 0..=8 {
            let b: Vec<u8> = (1..=n as u8).collect();
            let mut want = [0u8; 8];
            want[..n].copy_from_slice(&b);
            assert_eq!(load_le(&b), u64::from_le_bytes(want), "len {n}");
        }
    }

    #[test]
    fn hash_is_pinned() {
        // The documented algorithm, pinned: a change here breaks stored fingerprints.
        let mut h = HashSink::default();
        h.add(NTok::Word("SELECT"));
        h.add(NTok::Const);
        let a = h.finish();
        let mut h = HashSink::default();
        h.add(NTok::Word("select"));
        h.add(NTok::Const);
        assert_eq!(a, h.finish());
        assert_eq!(a, 11280265794900506773);
        assert_eq!(
            crate::fingerprint_id(
                "SELECT * FROM contacts WHERE email = 'a' AND created_at > now() - interval '1 day'"
            ),
            1505797993156049705
        );
    }
}
