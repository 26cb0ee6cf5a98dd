//! Bound parameter values of one extended-protocol execution, held in memory only: for the custom
//! plan of a wanted fingerprint ([`super::plans`]) and, redacted to shapes, for the opt-in
//! parameter sample (`[queries] parameter_sample = "redacted"`).
//!
//! [`BoundParams`] has no `Debug`/`Serialize`: its values cannot be logged or written out by
//! accident. [`redact`] turns each value into its shape (`<text:12>`, `<int>`, `<email>`,
//! `<phone>`, `<card>`, `<null>`...): the value itself never survives.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;

/// `[queries] parameter_sample`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParameterSample {
    /// Parameter values are never kept (the default: they may hold customer PII).
    #[default]
    Off,
    /// One recent sample per fingerprint, every value redacted to its shape.
    Redacted,
}

/// The parameters of one Bind: formats, values and the Parse's type oids (when declared).
pub struct BoundParams {
    /// The Parse's declared parameter types (empty or 0 = inferred by the server).
    pub types: Vec<u32>,
    /// Format codes as sent (0 or 1 entries apply to all parameters).
    pub formats: Vec<i16>,
    pub values: Vec<Option<Vec<u8>>>,
}

fn i16_at(b: &[u8], at: &mut usize) -> Option<i16> {
    let v = b.get(*at..*at + 2)?;
    *at += 2;
    Some(i16::from_be_bytes([v[0], v[1]]))
}

fn i32_at(b: &[u8], at: &mut usize) -> Option<i32> {
    let v = b.get(*at..*at + 4)?;
    *at += 4;
    Some(i32::from_be_bytes([v[0], v[1], v[2], v[3]]))
}

impl BoundParams {
    /// Decode the part of a Bind after its portal and statement names; `None` if malformed.
    pub fn decode(rest: &[u8], types: &[u32]) -> Option<BoundParams> {
        let mut at = 0;
        let nf = i16_at(rest, &mut at)?;
        let mut formats = Vec::with_capacity(nf.max(0) as usize);
        for _ in 0..nf.max(0) {
            formats.push(i16_at(rest, &mut at)?);
        }
        let np = i16_at(rest, &mut at)?;
        let mut values = Vec::with_capacity(np.max(0) as usize);
        for _ in 0..np.max(0) {
            let len = i32_at(rest, &mut at)?;
            if len < 0 {
                values.push(None);
            } else {
                let v = rest.get(at..at + len as usize)?;
                at += len as usize;
                values.push(Some(v.to_vec()));
            }
        }
        Some(BoundParams {
            types: types.to_vec(),
            formats,
            values,
        })
    }

    /// The format code of parameter `i`.
    pub fn format(&self, i: usize) -> i16 {
        match self.formats.len() {
            0 => 0,
            1 => self.formats[0],
            _ => self.formats.get(i).copied().unwrap_or(0),
        }
    }

    /// The declared type oid of parameter `i` (0 = unknown).
    pub fn type_oid(&self, i: usize) -> u32 {
        self.types.get(i).copied().unwrap_or(0)
    }

    /// Every value redacted to its shape.
    pub fn redacted(&self) -> Vec<String> {
        (0..self.values.len())
            .map(|i| redact(self.values[i].as_deref(), self.format(i), self.type_oid(i)))
            .collect()
    }
}

/// The opt-in redacted parameter samples: per table key (fingerprint, database, role) the shapes
/// of one Bind, taken at most once per key per statistics window.
pub struct ParamSampler {
    mode: ParameterSample,
    max: usize,
    samples: Mutex<HashMap<u64, Vec<String>>>,
    sampled: Mutex<HashSet<u64>>,
    /// Some key may still be sampled in this window (the hot path's one check).
    open: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ParamSampler {
    pub fn new(mode: ParameterSample, max: usize) -> ParamSampler {
        ParamSampler {
            mode,
            max: max.max(1),
            samples: Mutex::new(HashMap::new()),
            sampled: Mutex::new(HashSet::new()),
            open: AtomicBool::new(mode == ParameterSample::Redacted),
        }
    }

    /// Hot path: does the next Bind matter?
    pub fn wants(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Keep the shapes of a Bind's values for `key`, once per window; `known` is how many keys
    /// the statistics table holds (when all were sampled, the window's sampling closes).
    pub fn observe(&self, key: u64, known: usize, params: &[u8], types: &[u32]) {
        if self.mode == ParameterSample::Off {
            return;
        }
        {
            let mut sampled = lock(&self.sampled);
            if !sampled.insert(key) {
                return;
            }
            if known > 0 && sampled.len() >= known {
                self.open.store(false, Ordering::Relaxed);
            }
        }
        let Some(bound) = BoundParams::decode(params, types) else {
            return;
        };
        let shapes = bound.redacted();
        drop(bound);
        let mut m = lock(&self.samples);
        if m.len() >= self.max && !m.contains_key(&key) {
            m.clear();
        }
        m.insert(key, shapes);
    }

    /// A new window: every key may be sampled again.
    pub fn rotate(&self) {
        if self.mode == ParameterSample::Redacted {
            lock(&self.sampled).clear();
            self.open.store(true, Ordering::Relaxed);
        }
    }

    /// The sample of `key`, if one was taken (never with `parameter_sample = "off"`).
    pub fn get(&self, key: u64) -> Option<Vec<String>> {
        if self.mode == ParameterSample::Off {
            return None;
        }
        lock(&self.samples).get(&key).cloned()
    }
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn looks_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}

fn looks_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn looks_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
}

/// The shape of one text value.
fn text_shape(s: &str) -> String {
    let t = s.trim();
    if t.is_empty() {
        return "<text:0>".into();
    }
    if looks_email(t) {
        return "<email>".into();
    }
    let digits: Vec<u8> = t.bytes().filter(u8::is_ascii_digit).collect();
    let only = |extra: &[u8]| t.bytes().all(|c| c.is_ascii_digit() || extra.contains(&c));
    if (13..=19).contains(&digits.len()) && only(b" -") && luhn(&digits) {
        return "<card>".into();
    }
    let signed = t.strip_prefix(['-', '+']).unwrap_or(t);
    if !signed.is_empty() && signed.bytes().all(|c| c.is_ascii_digit()) {
        // A long digit string with a leading + or 0 is a phone number, not an integer.
        if !(t.starts_with('+') || t.starts_with('0') && t.len() > 1) || digits.len() < 7 {
            return "<int>".into();
        }
    }
    if (7..=15).contains(&digits.len()) && only(b" -+().") {
        return "<phone>".into();
    }
    if signed.parse::<f64>().is_ok() && signed.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return "<numeric>".into();
    }
    if looks_uuid(t) {
        return "<uuid>".into();
    }
    if matches!(
        t.to_ascii_lowercase().as_str(),
        "t" | "f" | "true" | "false"
    ) {
        return "<bool>".into();
    }
    if looks_timestamp(t) {
        return "<timestamp>".into();
    }
    format!("<text:{}>", s.chars().count())
}

/// The shape of one bound value: never the value itself.
pub fn redact(value: Option<&[u8]>, format: i16, type_oid: u32) -> String {
    let Some(v) = value else {
        return "<null>".into();
    };
    if format == 1 {
        let by_type = match type_oid {
            16 => Some("<bool>"),
            20 | 21 | 23 | 26 => Some("<int>"),
            700 | 701 | 1700 => Some("<numeric>"),
            1082 => Some("<date>"),
            1114 | 1184 => Some("<timestamp>"),
            2950 => Some("<uuid>"),
            17 => return format!("<bytea:{}>", v.len()),
            _ => None,
        };
        if let Some(s) = by_type {
            return s.into();
        }
        // Text-like types are sent as their UTF-8 bytes in binary format too.
        return match std::str::from_utf8(v) {
            Ok(s) if !s.is_empty() && !s.chars().any(char::is_control) => text_shape(s),
            _ => format!("<binary:{}>", v.len()),
        };
    }
    match std::str::from_utf8(v) {
        Ok(s) => text_shape(s),
        Err(_) => format!("<binary:{}>", v.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(s: &str) -> String {
        redact(Some(s.as_bytes()), 0, 0)
    }

    #[test]
    fn values_become_shapes() {
        assert_eq!(shape("jane.doe@example.com"), "<email>");
        assert_eq!(shape("+1 (555) 010-9999"), "<phone>");
        assert_eq!(shape("0612345678"), "<phone>");
        assert_eq!(shape("4111 1111 1111 1111"), "<card>");
        assert_eq!(shape("4111111111111111"), "<card>");
        assert_eq!(shape("42"), "<int>");
        assert_eq!(shape("-7"), "<int>");
        assert_eq!(shape("3.14"), "<numeric>");
        assert_eq!(shape("hello world!"), "<text:12>");
        assert_eq!(shape("2026-11-28 12:00:00"), "<timestamp>");
        assert_eq!(shape("6f1c1a9e-4a55-4c1e-9d3e-0c1d2e3f4a5b"), "<uuid>");
        assert_eq!(redact(None, 0, 0), "<null>");
        assert_eq!(redact(Some(&[0, 0, 0, 5]), 1, 23), "<int>");
        assert_eq!(redact(Some(&[0, 0, 0, 5]), 1, 0), "<binary:4>");
        assert_eq!(redact(Some(b"jane@example.com"), 1, 0), "<email>");
    }

    #[test]
    fn bind_bodies_are_decoded() {
        // 1 format (text), 3 params: "ab", NULL, "" ; 1 result format.
        let mut b = vec![0, 1, 0, 0, 0, 3];
        b.extend_from_slice(&2i32.to_be_bytes());
        b.extend_from_slice(b"ab");
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&[0, 1, 0, 1]);
        let p = BoundParams::decode(&b, &[25]).unwrap();
        assert_eq!(p.values, vec![Some(b"ab".to_vec()), None, Some(vec![])]);
        assert_eq!(p.format(2), 0);
        assert_eq!(p.type_oid(0), 25);
        assert_eq!(p.redacted(), vec!["<text:2>", "<null>", "<text:0>"]);
        assert!(BoundParams::decode(&b[..8], &[]).is_none());
    }
}
