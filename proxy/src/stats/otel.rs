//! OpenTelemetry DB client spans: one `CLIENT` span per statement when tracing is on.
//!
//! [`OtelHook`] is a composite [`StatementHook`]: it passes every event on to the next hook (the
//! statistics, or none) and turns each completed statement into a span following the database
//! semantic conventions: `db.system.name` (`postgresql`), `db.namespace` (the client-visible
//! database), `db.operation.name`, `db.collection.name` (when one table is involved),
//! `db.query.summary` (also the span name), `db.query.text` sanitized (the normalized text:
//! constants replaced by `$n`; parameter values are never seen) and, on failure,
//! `db.response.status_code` (the SQLSTATE) with an error status. A trailing sqlcommenter
//! `traceparent` (`/*traceparent='00-<trace>-<span>-<flags>'*/`) makes the span a child of the
//! application's span, so the database call shows inside the request's trace.
//!
//! `vigil run` installs it only when `[telemetry] otlp_endpoint` is set: with tracing off there
//! is no hook and no cost.

use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{
    Span, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer,
};
use opentelemetry::{Context, KeyValue};
use vigil_analyzer::AnalysisCache;

use crate::pg::hook::{BindEvent, ParseEvent, StatementEvent, StatementHook};

/// Longest `db.query.text` exported (longer normalized texts are cut at a char boundary).
const MAX_QUERY_TEXT: usize = 4096;
/// Tables named in `db.query.summary`.
const SUMMARY_TABLES: usize = 3;

/// The span-emitting statement hook.
pub struct OtelHook {
    tracer: BoxedTracer,
    next: Option<Arc<dyn StatementHook>>,
    analyses: AnalysisCache,
}

impl OtelHook {
    /// Spans go to `tracer`; events are passed on to `next` first.
    pub fn new(tracer: BoxedTracer, next: Option<Arc<dyn StatementHook>>) -> OtelHook {
        OtelHook {
            tracer,
            next,
            analyses: AnalysisCache::new(2000),
        }
    }

    /// With the globally installed tracer provider (set by `vigil run`'s telemetry).
    pub fn global(next: Option<Arc<dyn StatementHook>>) -> OtelHook {
        Self::new(opentelemetry::global::tracer("vigil.pg"), next)
    }
}

/// A W3C `traceparent` value as a remote parent span context.
pub fn remote_parent(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (ver, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(ver, 2) || ver == "ff" || (ver == "00" && parts.next().is_some()) {
        return None;
    }
    if !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    ))
}

fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut i = max;
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        s.truncate(i);
    }
    s
}

impl StatementHook for OtelHook {
    fn on_parse(&self, event: &ParseEvent<'_>) {
        if let Some(n) = &self.next {
            n.on_parse(event);
        }
    }

    fn wants_params(&self) -> bool {
        self.next.as_ref().is_some_and(|n| n.wants_params())
    }

    fn on_bind(&self, event: &BindEvent<'_>) {
        if let Some(n) = &self.next {
            n.on_bind(event);
        }
    }

    fn on_statement(&self, e: &StatementEvent<'_>) {
        if let Some(n) = &self.next {
            n.on_statement(e);
        }
        let end = SystemTime::now();
        let start = end.checked_sub(e.duration).unwrap_or(end);
        let fp = vigil_analyzer::fingerprint(e.sql);
        let analysis = self.analyses.get_or_analyze(fp.id, e.sql);
        let mut tables: Vec<&str> = Vec::new();
        for t in analysis.tables_read.iter().chain(&analysis.tables_written) {
            if !tables.contains(&t.as_str()) {
                tables.push(t);
            }
        }
        let operation = if analysis.operation.is_empty() {
            fp.normalized
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase()
        } else {
            analysis.operation.clone()
        };
        let summary = if tables.is_empty() {
            operation.clone()
        } else {
            let mut s = operation.clone();
            for t in tables.iter().take(SUMMARY_TABLES) {
                s.push(' ');
                s.push_str(t);
            }
            s
        };
        let mut attrs = vec![
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.namespace", e.database.to_owned()),
            KeyValue::new("db.query.summary", summary.clone()),
            KeyValue::new("db.query.text", cut(fp.normalized, MAX_QUERY_TEXT)),
        ];
        if !operation.is_empty() {
            attrs.push(KeyValue::new("db.operation.name", operation));
        }
        if tables.len() == 1 {
            attrs.push(KeyValue::new("db.collection.name", tables[0].to_owned()));
        }
        if let Some(code) = e.sqlstate {
            attrs.push(KeyValue::new("db.response.status_code", code.to_owned()));
            attrs.push(KeyValue::new("error.type", code.to_owned()));
        }
        if let Some(rows) = e.rows {
            attrs.push(KeyValue::new(
                "db.response.returned_rows",
                i64::try_from(rows).unwrap_or(i64::MAX),
            ));
        }
        let parent = match fp.tags.traceparent.as_deref().and_then(remote_parent) {
            Some(sc) => Context::new().with_remote_span_context(sc),
            None => Context::new(),
        };
        let name = if summary.is_empty() {
            "postgresql".to_owned()
        } else {
            summary
        };
        let mut span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes(attrs)
            .start_with_context(&self.tracer, &parent);
        if let Some(code) = e.sqlstate {
            span.set_status(Status::error(format!("SQLSTATE {code}")));
        }
        span.end_with_timestamp(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_strictly() {
        let sc = remote_parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            sc.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert!(sc.is_remote() && sc.is_sampled());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert!(remote_parent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        assert_eq!(cut("ééé".to_owned(), 3), "é");
        assert_eq!(cut("abc".to_owned(), 10), "abc");
    }
}
