//! Per-route RED signals for the incident service: requests, 5xx errors and latency per route
//! template, pre-aggregated over a window (one signal per route and window, not per request).

use std::collections::HashMap;

/// Per-route maps on the request path: foldhash (randomly seeded) instead of SipHash; the keys
/// are route templates, whose number [`super::routes::RouteTable`] bounds.
type RouteMap<V> = HashMap<String, V, foldhash::fast::RandomState>;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use vigil_signal::{Channel, Latency, Outcome, Scope, Signal, Source};

/// Latency samples kept per route and window for the p95 (reservoir of the first ones).
const MAX_SAMPLES: usize = 2048;

#[derive(Default)]
struct Window {
    count: u64,
    errors: u64,
    sum: f64,
    max: f64,
    samples: Vec<f64>,
}

/// Accumulates one window of per-route outcomes.
pub struct IngressStats {
    window_secs: u32,
    inner: Mutex<(DateTime<Utc>, RouteMap<Window>)>,
}

impl IngressStats {
    pub fn new(window_secs: u32) -> IngressStats {
        IngressStats {
            window_secs: window_secs.max(1),
            inner: Mutex::new((Utc::now(), RouteMap::default())),
        }
    }

    pub fn record(&self, route: &str, status: u16, secs: f64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // The route is usually known: no key allocation then.
        if !g.1.contains_key(route) {
            g.1.insert(route.to_string(), Window::default());
        }
        let Some(w) = g.1.get_mut(route) else {
            return;
        };
        w.count += 1;
        if status >= 500 {
            w.errors += 1;
        }
        w.sum += secs;
        w.max = w.max.max(secs);
        if w.samples.len() < MAX_SAMPLES {
            w.samples.push(secs);
        }
    }

    /// Ends the window: one `succeeded` signal per route with traffic, plus one `failed`
    /// (class `http_5xx`) when it had server errors.
    pub fn flush(&self) -> Vec<Signal> {
        let (start, routes) = {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let start = std::mem::replace(&mut g.0, Utc::now());
            (start, std::mem::take(&mut g.1))
        };
        let mut out = Vec::new();
        for (route, mut w) in routes {
            w.samples.sort_by(|a, b| a.total_cmp(b));
            let p95 = w
                .samples
                .get(((w.samples.len() as f64 * 0.95).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0.0);
            let latency = Latency {
                sum_seconds: w.sum,
                max_seconds: w.max,
                p95_seconds: p95,
            };
            let base = |outcome: Outcome, count: u64| {
                Signal::new(Source::HttpIngress, Channel::Http, outcome)
                    .with_time(start)
                    .with_window(self.window_secs)
                    .with_scope(Scope::Service)
                    .with_subject(route.clone())
                    .with_count(count)
                    .with_latency(latency)
                    .with_attr("route", route.clone())
            };
            let ok = w.count - w.errors;
            if ok > 0 {
                out.push(base(Outcome::Succeeded, ok));
            }
            if w.errors > 0 {
                out.push(
                    base(Outcome::Failed, w.errors)
                        .with_class("http_5xx")
                        .with_permanent(Some(false)),
                );
            }
        }
        out
    }

    pub fn window_secs(&self) -> u32 {
        self.window_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_per_route() {
        let s = IngressStats::new(10);
        for i in 0..19 {
            s.record("/a", 200, 0.01 * f64::from(i + 1));
        }
        s.record("/a", 502, 1.0);
        let mut sig = s.flush();
        sig.sort_by_key(|x| x.count);
        assert_eq!(sig.len(), 2);
        assert_eq!((sig[0].outcome, sig[0].count), (Outcome::Failed, 1));
        assert_eq!((sig[1].outcome, sig[1].count), (Outcome::Succeeded, 19));
        let l = sig[1].latency.unwrap();
        assert_eq!(l.max_seconds, 1.0);
        assert!((l.p95_seconds - 0.19).abs() < 1e-9, "{}", l.p95_seconds);
        assert!(s.flush().is_empty());
    }
}
