#!/usr/bin/env bash
# bench/incident/run.sh: the incident service (issue 7).
#
# 1. Sustained ingest with detection and correlation on: `vigil-bench-incident ingest` (this
#    folder) feeds a mixed stream (email/SMS webhooks, gateway sends, payments across providers
#    and failure classes, HTTP route windows, query-statistics buckets, a SendGrid blocked-IP
#    spike in the middle) through IncidentService::ingest in batches of 256 (the call `vigil
#    run`'s in-process transport makes: SQLite store insert, then detection) with a tick
#    (correlation, incident persistence, outbox) every 10 s of signal time, pinned to one core
#    (`taskset -c 1`). Signals per CPU-second of the process (user + system; robust to other
#    load on the machine), median of the rounds.
# 2. First failure to page: `vigil run` with only the incident service, the shipped rules
#    (rules/incident/*.yaml, default tick 10 s) and the Slack receiver pointed at a local HTTP
#    receiver; `vigil-bench-incident page` posts 200 signals/s of normal traffic to
#    /v1/signals, then a SendGrid blocked-IP spike, and measures from the first failing signal
#    to the page arriving. Median of the rounds.
# Prints markdown rows for bench/run; details on stderr.
#
#   VIGIL_BIN=path/to/vigil bench/incident/run.sh   (builds target/release/vigil when unset)
#   BENCH_QUICK=1: 200k signals, 1 round each; otherwise 500k signals and 3 rounds of each.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../harness/lib.sh
. "$ROOT/bench/harness/lib.sh"

if [ "${BENCH_QUICK:-0}" = 1 ]; then
    N=${INCIDENT_SIGNALS:-200000}; ROUNDS=${INCIDENT_ROUNDS:-1}; PAGE_ROUNDS=${INCIDENT_PAGE_ROUNDS:-1}; WARMUP=10
else
    N=${INCIDENT_SIGNALS:-500000}; ROUNDS=${INCIDENT_ROUNDS:-3}; PAGE_ROUNDS=${INCIDENT_PAGE_ROUNDS:-3}; WARMUP=20
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "${VIGIL_BIN:-}" ]; then
    log "building vigil (release)"
    (cd "$ROOT" && cargo build --release --bin vigil -q) >&2
    VIGIL_BIN="$CARGO_TARGET_DIR/release/vigil"
fi
log "building bench/incident (release)"
(cd "$ROOT/bench/incident" && cargo build --release -q) >&2
BENCH_BIN="$CARGO_TARGET_DIR/release/vigil-bench-incident"

W=$(mktemp -d /tmp/vigil-bench-incident.XXXXXX)
chmod 755 "$W"
trap bench_cleanup EXIT
: >"$W/rows"
PIN=()
if command -v taskset >/dev/null && [ "$(nproc)" -gt 1 ]; then PIN=(taskset -c 1); fi

# ---- 1. ingest ---------------------------------------------------------------------------------
cpu_rates=() wall_rates=()
for r in $(seq "$ROUNDS"); do
    rm -f "$W"/ingest.db*
    out=$("${PIN[@]}" "$BENCH_BIN" ingest "$N" --store "sqlite://$W/ingest.db" --rules "$ROOT/rules/incident") ||
        die "ingest round $r failed"
    echo "$out" | sed "s/^/ingest round $r: /" >&2
    cpu_rates+=("$(echo "$out" | awk '/per cpu-second/ {print $4}')")
    wall_rates+=("$(echo "$out" | awk '/per wall-second/ {print $4}')")
done
rate=$(median "${cpu_rates[@]}")
wall=$(median "${wall_rates[@]}")
log "ingest: median ${rate:-?} signals per CPU-second, ${wall:-?} per wall-second (pinned to one core)"

# ---- 2. first failure to page ------------------------------------------------------------------
run_page() { # $1 round -> seconds on stdout
    local ip rp admin
    ip=$(free_port) rp=$(free_port) admin=$(free_port)
    rm -rf "$W/page.db"*
    cat >"$W/page.toml" <<TOML
[admin]
listen = "127.0.0.1:$admin"

[signals]
transport = "local"

[incident]
listen = "127.0.0.1:$ip"
store = "sqlite://$W/page.db"
rules = "$ROOT/rules/incident"

[telemetry]
log_level = "warn"
TOML
    # The shipped routes page PagerDuty and Slack; only Slack's URL is set (to the local
    # receiver), so nothing leaves the machine (PagerDuty's delivery fails: no routing key).
    VIGIL_SLACK_WEBHOOK_URL="http://127.0.0.1:$rp/slack" \
        "$VIGIL_BIN" run --config "$W/page.toml" >"$W/page-$1.log" 2>&1 &
    local pid=$!
    track "$pid"
    wait_port "$ip" 30 || die "vigil did not start (see $W/page-$1.log)"
    local out
    out=$("$BENCH_BIN" page --intake "http://127.0.0.1:$ip" --receiver-port "$rp" --warmup "$WARMUP" --limit 120 2>>"$W/page-$1.err") ||
        { log "page round $1 failed: $(tail -2 "$W/page-$1.err")"; kill "$pid" 2>/dev/null || true; return 0; }
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    sed "s/^/page round $1: /" "$W/page-$1.err" >&2
    echo "$out" | awk '/first failure to page/ {print $(NF-1)}'
}
pages=()
for r in $(seq "$PAGE_ROUNDS"); do
    s=$(run_page "$r")
    log "page round $r: ${s:-failed} s"
    pages+=("$s")
done
page=$(median "${pages[@]}")

row "incident: ingest, detection and correlation on" "signals/s/core" "$(fmt0 "$rate")" "-" "-" "-" ">=100000" "$(met "$rate" '>=' 100000)"
row "incident: first failure to page" "s" "$(fmt2 "$page")" "alertmanager defaults (group_wait 30 s + scrape/eval)" "~60" "$(ratio "$page" 60)" "<30 s" "$(met "$page" '<=' 30)"
log "ingest: ${N} signals x ${ROUNDS} rounds (wall-clock rate ${wall:-?}/s); page: ${PAGE_ROUNDS} rounds, warm-up ${WARMUP} s; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$W/rows"
