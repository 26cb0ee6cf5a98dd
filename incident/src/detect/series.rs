//! Per-group minute buckets (attempts, webhooks, latency) and per-class failure series with a
//! learned, exponentially decayed baseline that skips minutes spent firing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use vigil_signal::{Scope, Signal};

use super::stats::{binomial_upper_tail, poisson_upper_tail};
use super::{ActiveFinding, DetectConfig, MINUTE_MS};
use crate::model::{Finding, Severity};

#[derive(Debug, Default, Clone)]
pub(crate) struct Bucket {
    pub n: u64,
    pub webhooks: u64,
    pub lat_count: u64,
    pub lat_sum: f64,
    pub lat_p95: f64,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct ClassBucket {
    k: u64,
    codes: BTreeMap<String, u64>,
    routes: BTreeSet<String>,
    fingerprints: BTreeSet<String>,
    tables: BTreeSet<String>,
    traces: BTreeSet<String>,
    subjects: BTreeSet<String>,
    first_ms: i64,
    last_ms: i64,
}

/// Hysteresis state of one detector.
#[derive(Debug, Default, Clone)]
pub(crate) struct FireState {
    firing: bool,
    last_bad_ms: i64,
}

impl FireState {
    /// Update with this tick's verdicts; returns whether the detector is firing now.
    fn update(&mut self, start: bool, still_bad: bool, now_ms: i64, recovery_ms: i64) -> bool {
        if !self.firing {
            if start {
                self.firing = true;
                self.last_bad_ms = now_ms;
            }
        } else if start || still_bad {
            self.last_bad_ms = now_ms;
        } else if now_ms - self.last_bad_ms >= recovery_ms {
            self.firing = false;
        }
        self.firing
    }
}

/// One failure class of one group.
#[derive(Debug, Clone)]
pub(crate) struct ClassSeries {
    class: String,
    scope: Scope,
    buckets: BTreeMap<i64, ClassBucket>,
    hist_k: f64,
    hist_n: f64,
    hist_minutes: f64,
    bad_minutes: BTreeSet<i64>,
    fire: FireState,
}

impl ClassSeries {
    pub fn new(class: &str, scope: Scope, hist_n: f64) -> ClassSeries {
        ClassSeries {
            class: class.to_string(),
            scope,
            buckets: BTreeMap::new(),
            hist_k: 0.0,
            hist_n,
            hist_minutes: 0.0,
            bad_minutes: BTreeSet::new(),
            fire: FireState::default(),
        }
    }

    pub fn add_failure(&mut self, minute: i64, s: &Signal) {
        let t = s.time.timestamp_millis();
        let b = self.buckets.entry(minute).or_insert_with(|| ClassBucket {
            first_ms: t,
            last_ms: t,
            ..ClassBucket::default()
        });
        b.first_ms = b.first_ms.min(t);
        b.last_ms = b.last_ms.max(t);
        b.k += s.count;
        if let Some(code) = &s.code
            && (b.codes.len() < 50 || b.codes.contains_key(code))
        {
            *b.codes.entry(code.clone()).or_default() += s.count;
        }
        let put = |set: &mut BTreeSet<String>, v: Option<&String>, cap: usize| {
            if let Some(v) = v
                && set.len() < cap
            {
                set.insert(v.clone());
            }
        };
        put(&mut b.routes, s.attrs.get("route"), 20);
        put(&mut b.fingerprints, s.attrs.get("fingerprint"), 20);
        put(&mut b.traces, s.attrs.get("trace_id"), 10);
        if let Some(tables) = s.attrs.get("tables") {
            for t in tables.split(',') {
                put(&mut b.tables, Some(&t.trim().to_string()), 20);
            }
        }
        if self.scope == Scope::Recipient || s.scope == Scope::Recipient {
            // Distinct recipients: a retried dead mailbox counts once.
            let subject = s.subject.clone().unwrap_or_else(|| s.id.clone());
            b.subjects.insert(subject);
        }
        // The widest scope seen decides the class's weight.
        if weight(s.scope) > weight(self.scope) {
            self.scope = s.scope;
        }
    }

    fn k_in(&self, from: i64, to: i64) -> u64 {
        if self.class == "recipient" {
            let mut seen = BTreeSet::new();
            for b in self.buckets.range(from..to).map(|(_, b)| b) {
                seen.extend(b.subjects.iter());
            }
            seen.len() as u64
        } else {
            self.buckets.range(from..to).map(|(_, b)| b.k).sum()
        }
    }
}

/// Sender- and provider-scoped failures weigh twice as much as service-scoped ones.
fn weight(scope: Scope) -> u64 {
    match scope {
        Scope::Sender | Scope::Provider => 2,
        Scope::Service => 1,
        Scope::Recipient => 0,
    }
}

/// All series of one `channel/target` group.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    channel: String,
    provider: Option<String>,
    target: String,
    buckets: BTreeMap<i64, Bucket>,
    pub hist_n: f64,
    hist_webhooks: f64,
    hist_minutes: f64,
    hist_lat_sum: f64,
    hist_lat_count: f64,
    folded_until: Option<i64>,
    last_webhook_min: Option<i64>,
    pub classes: BTreeMap<String, ClassSeries>,
    latency: FireState,
    silent: FireState,
    missing: FireState,
}

/// Gateway sends awaiting their delivery webhook.
#[derive(Debug, Default, Clone)]
pub(crate) struct Pending {
    pub ids: HashMap<String, i64>,
    pub sent: BTreeMap<i64, u64>,
}

fn mins(secs: u64) -> i64 {
    i64::try_from(secs / 60).unwrap_or(i64::MAX).max(1)
}

fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX / 1000) * 1000
}

impl Group {
    pub fn new(channel: &str, provider: Option<String>, target: &str) -> Group {
        Group {
            channel: channel.to_string(),
            provider,
            target: target.to_string(),
            buckets: BTreeMap::new(),
            hist_n: 0.0,
            hist_webhooks: 0.0,
            hist_minutes: 0.0,
            hist_lat_sum: 0.0,
            hist_lat_count: 0.0,
            folded_until: None,
            last_webhook_min: None,
            classes: BTreeMap::new(),
            latency: FireState::default(),
            silent: FireState::default(),
            missing: FireState::default(),
        }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub fn bucket(&mut self, minute: i64) -> &mut Bucket {
        if self.folded_until.is_none() {
            self.folded_until = Some(minute);
        }
        self.buckets.entry(minute).or_default()
    }

    fn n_in(&self, from: i64, to: i64) -> u64 {
        self.buckets.range(from..to).map(|(_, b)| b.n).sum()
    }

    /// Move minutes that left the long window into the decayed history.
    pub fn fold_history(&mut self, now_min: i64, cfg: &DetectConfig) {
        let edge = now_min - mins(cfg.long_window_secs);
        let Some(from) = self.folded_until else {
            return;
        };
        if edge <= from {
            return;
        }
        let span = edge - from;
        let half_life = cfg.baseline_half_life_secs.max(60) as f64 / 60.0;
        let decay = 0.5f64.powf(span as f64 / half_life);
        self.hist_n *= decay;
        self.hist_webhooks *= decay;
        self.hist_minutes = self.hist_minutes * decay + span as f64;
        self.hist_lat_sum *= decay;
        self.hist_lat_count *= decay;
        for (_, b) in self.buckets.range(from..edge) {
            self.hist_n += b.n as f64;
            self.hist_webhooks += b.webhooks as f64;
            self.hist_lat_sum += b.lat_sum;
            self.hist_lat_count += b.lat_count as f64;
        }
        for class in self.classes.values_mut() {
            class.hist_k *= decay;
            class.hist_n *= decay;
            class.hist_minutes *= decay;
            // Spans longer than a few half-lives leave nothing worth adding one minute at a time.
            let start = from.max(edge - (half_life as i64) * 8);
            for m in start..edge {
                if class.bad_minutes.contains(&m) {
                    continue;
                }
                class.hist_minutes += 1.0;
                class.hist_n += self.buckets.get(&m).map_or(0, |b| b.n) as f64;
                class.hist_k += class.buckets.get(&m).map_or(0, |b| b.k) as f64;
            }
            class.buckets = class.buckets.split_off(&edge);
            class.bad_minutes = class.bad_minutes.split_off(&edge);
        }
        self.buckets = self.buckets.split_off(&edge);
        self.folded_until = Some(edge);
    }

    /// Rate tests of every class and the latency test.
    pub fn evaluate(
        &mut self,
        key: &str,
        now_min: i64,
        now_ms: i64,
        cfg: &DetectConfig,
        out: &mut Vec<ActiveFinding>,
    ) {
        let long = mins(cfg.long_window_secs);
        let from = now_min - long;
        let n_long = self.n_in(from, now_min);
        // Short window: at least short_window, extended back until it holds enough attempts.
        let mut short_from = now_min - mins(cfg.short_window_secs);
        while short_from > from && self.n_in(short_from, now_min) < cfg.short_min_attempts {
            short_from -= 1;
        }
        let n_short = self.n_in(short_from, now_min);
        let recovery = secs_ms(cfg.recovery_secs);
        for (class_name, class) in &mut self.classes {
            let k_long = class.k_in(from, now_min);
            let k_short = class.k_in(short_from, now_min);
            let w = weight(class.scope).max(1);
            let floor = cfg.min_failures.div_ceil(w);
            let excess = cfg.min_excess / w as f64;
            let (baseline, p_long, p_short, effect) = if n_long > 0 {
                let p0 = (cfg.prior_rate * cfg.prior_weight + class.hist_k)
                    / (cfg.prior_weight + class.hist_n.max(class.hist_k));
                let p0 = p0.clamp(1e-9, 0.999_999);
                // Effect size on the confirmation window: a fresh spike at high volume is
                // diluted in the long window but plain in the short one.
                let rate = k_short as f64 / n_short.max(1) as f64;
                (
                    p0,
                    binomial_upper_tail(k_long, n_long.max(k_long), p0),
                    binomial_upper_tail(k_short, n_short.max(k_short), p0),
                    rate >= p0 * cfg.min_ratio && rate >= p0 + excess,
                )
            } else {
                let l0 = (cfg.prior_events_per_minute * cfg.prior_minutes + class.hist_k)
                    / (cfg.prior_minutes + class.hist_minutes);
                let short_mins = (now_min - short_from) as f64;
                (
                    l0,
                    poisson_upper_tail(k_long, l0 * long as f64),
                    poisson_upper_tail(k_short, l0 * short_mins),
                    k_long as f64 >= l0 * long as f64 * cfg.min_ratio,
                )
            };
            let start =
                p_long < cfg.alpha && p_short < cfg.short_alpha && k_long >= floor && effect;
            let still_bad = p_short < cfg.short_alpha && k_short > 0;
            if !class.fire.update(start, still_bad, now_ms, recovery) {
                continue;
            }
            let mark_from = if start { from } else { short_from };
            class.bad_minutes.extend(mark_from..now_min);
            let mut codes: BTreeMap<&String, u64> = BTreeMap::new();
            let (mut routes, mut fps, mut tables, mut traces) = (
                BTreeSet::new(),
                BTreeSet::new(),
                BTreeSet::new(),
                BTreeSet::new(),
            );
            let (mut first, mut last) = (i64::MAX, i64::MIN);
            for (_, b) in class.buckets.range(from..now_min) {
                for (c, v) in &b.codes {
                    *codes.entry(c).or_default() += v;
                }
                routes.extend(b.routes.iter().cloned());
                fps.extend(b.fingerprints.iter().cloned());
                tables.extend(b.tables.iter().cloned());
                traces.extend(b.traces.iter().cloned());
                first = first.min(b.first_ms);
                last = last.max(b.last_ms);
            }
            let mut top_codes: Vec<(String, u64)> =
                codes.into_iter().map(|(c, v)| (c.clone(), v)).collect();
            top_codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            top_codes.truncate(5);
            let severity = match class.scope {
                Scope::Recipient => Severity::Info,
                _ => Severity::Critical,
            };
            let what = if n_long > 0 {
                format!(
                    "{k_long} of {n_long} {} {} failed with {class_name} in {} min ({:.1}%, baseline {:.3}%, p={p_long:.1e}); {k_short} of {n_short} in the last {} min",
                    self.channel,
                    self.target,
                    long,
                    100.0 * k_long as f64 / n_long as f64,
                    100.0 * baseline,
                    now_min - short_from
                )
            } else {
                format!(
                    "{k_long} {class_name} failures for {} {} in {} min (baseline {baseline:.2}/min, p={p_long:.1e}); {k_short} in the last {} min",
                    self.channel,
                    self.target,
                    long,
                    now_min - short_from
                )
            };
            out.push(ActiveFinding {
                finding: Finding {
                    key: format!("{key}/{class_name}"),
                    detector: "rate".into(),
                    channel: self.channel.clone(),
                    provider: self.provider.clone(),
                    class: Some(class_name.clone()),
                    k: k_long,
                    n: n_long,
                    baseline,
                    p_value: p_long,
                    short_k: k_short,
                    short_n: n_short,
                    short_p_value: p_short,
                    long_window_secs: cfg.long_window_secs,
                    short_window_secs: u64::try_from(now_min - short_from).unwrap_or(0) * 60,
                    top_codes,
                    routes: routes.into_iter().take(10).collect(),
                    fingerprints: fps.into_iter().take(10).collect(),
                    tables: tables.into_iter().take(20).collect(),
                    trace_ids: traces.into_iter().take(10).collect(),
                    first_seen_ms: if first == i64::MAX { now_ms } else { first },
                    last_seen_ms: if last == i64::MIN { now_ms } else { last },
                    summary: what,
                },
                severity,
                scope: class.scope,
                failing_now: start || still_bad,
            });
        }
        self.evaluate_latency(key, now_min, now_ms, cfg, out);
    }

    fn evaluate_latency(
        &mut self,
        key: &str,
        now_min: i64,
        now_ms: i64,
        cfg: &DetectConfig,
        out: &mut Vec<ActiveFinding>,
    ) {
        if self.hist_lat_count < 100.0 {
            return;
        }
        let short_from = now_min - mins(cfg.short_window_secs);
        let (mut count, mut sum, mut p95) = (0u64, 0.0f64, 0.0f64);
        for (_, b) in self.buckets.range(short_from..now_min) {
            count += b.lat_count;
            sum += b.lat_sum;
            p95 = p95.max(b.lat_p95);
        }
        let baseline = self.hist_lat_sum / self.hist_lat_count;
        let mean = if count > 0 { sum / count as f64 } else { 0.0 };
        let bad = count >= cfg.latency_min_requests
            && mean > baseline * cfg.latency_ratio
            && mean > baseline + cfg.latency_min_excess_secs;
        if !self
            .latency
            .update(bad, bad, now_ms, secs_ms(cfg.recovery_secs))
        {
            return;
        }
        out.push(ActiveFinding {
            finding: Finding {
                key: format!("{key}/latency"),
                detector: "latency".into(),
                channel: self.channel.clone(),
                provider: self.provider.clone(),
                class: Some("latency".into()),
                k: count,
                n: count,
                baseline,
                p_value: 1.0,
                short_k: count,
                short_n: count,
                short_p_value: 1.0,
                long_window_secs: cfg.long_window_secs,
                short_window_secs: cfg.short_window_secs,
                top_codes: Vec::new(),
                routes: vec![self.target.clone()],
                fingerprints: Vec::new(),
                tables: Vec::new(),
                trace_ids: Vec::new(),
                first_seen_ms: short_from * MINUTE_MS,
                last_seen_ms: now_ms,
                summary: format!(
                    "{} {} mean latency {mean:.3}s over {count} requests in {} min (baseline {baseline:.3}s, p95 up to {p95:.3}s)",
                    self.channel,
                    self.target,
                    now_min - short_from
                ),
            },
            severity: Severity::Warning,
            scope: Scope::Service,
            failing_now: bad,
        });
    }

    /// A webhook source that went quiet although its learned rate makes silence improbable.
    pub fn silent_source(
        &mut self,
        key: &str,
        now_min: i64,
        cfg: &DetectConfig,
    ) -> Option<ActiveFinding> {
        if let Some((m, _)) = self
            .buckets
            .range(..now_min)
            .rev()
            .find(|(_, b)| b.webhooks > 0)
        {
            self.last_webhook_min = Some(self.last_webhook_min.map_or(*m, |l| l.max(*m)));
        }
        let last = self.last_webhook_min?;
        if self.hist_minutes < 60.0 || self.hist_webhooks <= 0.0 {
            return None;
        }
        let rate = self.hist_webhooks / self.hist_minutes;
        let quiet = now_min - last - 1;
        let lambda = rate * quiet as f64;
        let bad = quiet >= mins(cfg.silent_source_secs) && (-lambda).exp() < cfg.alpha;
        let now_ms = now_min * MINUTE_MS;
        if !self.silent.update(bad, bad, now_ms, 0) {
            return None;
        }
        Some(ActiveFinding {
            finding: simple_finding(
                format!("{key}/silent_source"),
                "silent_source",
                self,
                (last + 1) * MINUTE_MS,
                now_ms,
                format!(
                    "no {} webhooks from {} for {quiet} min (expected about {lambda:.0} at {rate:.2}/min)",
                    self.channel, self.target
                ),
                cfg,
            ),
            severity: Severity::Warning,
            scope: Scope::Provider,
            failing_now: bad,
        })
    }

    /// Gateway sends whose delivery webhook did not arrive in time.
    pub fn missing_outcomes(
        &mut self,
        key: &str,
        pending: &mut Pending,
        now_ms: i64,
        cfg: &DetectConfig,
    ) -> Option<ActiveFinding> {
        let grace = secs_ms(cfg.missing_outcome_secs);
        let span = secs_ms(cfg.long_window_secs);
        let (lo, hi) = (now_ms - grace - span, now_ms - grace);
        pending.ids.retain(|_, t| *t >= lo);
        pending.sent = pending.sent.split_off(&lo.div_euclid(MINUTE_MS));
        let sent: u64 = pending
            .sent
            .range(lo.div_euclid(MINUTE_MS)..hi.div_euclid(MINUTE_MS))
            .map(|(_, v)| v)
            .sum();
        let overdue = pending.ids.values().filter(|t| **t < hi).count() as u64;
        let bad = sent > 0
            && overdue >= cfg.min_failures.div_ceil(2)
            && overdue as f64 / sent as f64 >= 0.5;
        if !self
            .missing
            .update(bad, bad, now_ms, secs_ms(cfg.recovery_secs))
        {
            return None;
        }
        let mut f = simple_finding(
            format!("{key}/missing_outcome"),
            "missing_outcome",
            self,
            lo,
            now_ms,
            format!(
                "{overdue} of {sent} {} messages sent via {} have no delivery outcome after {} min",
                self.channel,
                self.target,
                cfg.missing_outcome_secs / 60
            ),
            cfg,
        );
        f.k = overdue;
        f.n = sent;
        Some(ActiveFinding {
            finding: f,
            severity: Severity::Critical,
            scope: Scope::Provider,
            failing_now: bad,
        })
    }
}

fn simple_finding(
    key: String,
    detector: &str,
    g: &Group,
    first: i64,
    last: i64,
    summary: String,
    cfg: &DetectConfig,
) -> Finding {
    Finding {
        key,
        detector: detector.into(),
        channel: g.channel.clone(),
        provider: g.provider.clone(),
        class: Some(detector.into()),
        k: 0,
        n: 0,
        baseline: 0.0,
        p_value: 1.0,
        short_k: 0,
        short_n: 0,
        short_p_value: 1.0,
        long_window_secs: cfg.long_window_secs,
        short_window_secs: cfg.short_window_secs,
        top_codes: Vec::new(),
        routes: Vec::new(),
        fingerprints: Vec::new(),
        tables: Vec::new(),
        trace_ids: Vec::new(),
        first_seen_ms: first,
        last_seen_ms: last,
        summary,
    }
}

/// Add `v` to a bounded, de-duplicated list.
pub(crate) fn push_unique(list: &mut Vec<String>, v: Option<&String>, cap: usize) {
    if let Some(v) = v
        && list.len() < cap
        && !list.contains(v)
    {
        list.push(v.clone());
    }
}

/// Count a code in a top-codes list (bounded).
pub(crate) fn bump_code(list: &mut Vec<(String, u64)>, code: &str) {
    if let Some(e) = list.iter_mut().find(|(c, _)| c == code) {
        e.1 += 1;
    } else if list.len() < 10 {
        list.push((code.to_string(), 1));
    }
    list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
}
