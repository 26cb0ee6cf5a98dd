//! W3C `traceparent`: continued from trusted peers (a new span id, the same trace), started
//! otherwise, and passed upstream.

/// The trace context for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub flags: String,
}

impl TraceContext {
    /// Continues `incoming` when given and valid, else starts a new sampled trace.
    pub fn continue_or_start(incoming: Option<&str>) -> TraceContext {
        let span_id = random_hex(8);
        if let Some((trace, parent, flags)) = incoming.and_then(parse) {
            return TraceContext {
                trace_id: trace,
                span_id,
                parent_span_id: Some(parent),
                flags,
            };
        }
        TraceContext {
            trace_id: random_hex(16),
            span_id,
            parent_span_id: None,
            flags: "01".to_string(),
        }
    }

    /// The header value to send upstream (this proxy's span as the parent).
    pub fn header(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

fn parse(v: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = v.trim().split('-').collect();
    if parts.len() < 4 {
        return None;
    }
    let (ver, trace, parent, flags) = (parts[0], parts[1], parts[2], parts[3]);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(ver, 2) || ver == "ff" || (ver == "00" && parts.len() != 4) {
        return None;
    }
    if !hex(trace, 32) || trace.bytes().all(|b| b == b'0') {
        return None;
    }
    if !hex(parent, 16) || parent.bytes().all(|b| b == b'0') || !hex(flags, 2) {
        return None;
    }
    Some((trace.into(), parent.into(), flags.into()))
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    loop {
        // The system RNG only fails without an entropy source; an all-zero id is invalid.
        let _ = aws_lc_rs::rand::fill(&mut b);
        if b.iter().any(|x| *x != 0) {
            return hex::encode(&b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_valid_and_starts_otherwise() {
        let t = TraceContext::continue_or_start(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(t.span_id, "00f067aa0ba902b7");
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "xx",
        ] {
            let t = TraceContext::continue_or_start(Some(bad));
            assert!(t.parent_span_id.is_none(), "{bad}");
            assert_eq!(t.trace_id.len(), 32);
        }
        assert!(
            TraceContext::continue_or_start(None)
                .header()
                .starts_with("00-")
        );
    }
}
