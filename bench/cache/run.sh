#!/usr/bin/env bash
# bench/cache/run.sh: the hot-read cache on a heavy CRM aggregate (20-50 ms on PostgreSQL) at
# 16 clients, directly vs through Vigil with the cache (memory backend), in one run; plus
# pgbench -S through Vigil with the cache enabled but not matching vs Vigil without a cache.
# Prints markdown rows for bench/run; details on stderr. Starts its own PostgreSQL and Vigil on
# free ports and cleans up.
#
#   VIGIL_BIN=path/to/vigil bench/cache/run.sh     (builds target/release/vigil when unset)
#   BENCH_QUICK=1: 5 s runs, one round; otherwise 15 s runs, 3 rounds (median).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../harness/lib.sh
. "$ROOT/bench/harness/lib.sh"

if [ "${BENCH_QUICK:-0}" = 1 ]; then T=${CACHE_T:-5}; ROUNDS=${CACHE_ROUNDS:-1}; else T=${CACHE_T:-15}; ROUNDS=${CACHE_ROUNDS:-3}; fi
ROWS=${CACHE_ROWS:-150000}
PGBIN=$(find_pgbin)
PGBENCH=${PGBENCH:-$(command -v pgbench || echo "$PGBIN/pgbench")}
if [ -z "${VIGIL_BIN:-}" ]; then
    log "building vigil (release)"
    (cd "$ROOT" && cargo build --release --bin vigil -q) >&2
    VIGIL_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/vigil"
fi
W=$(mktemp -d /tmp/vigil-bench-cache.XXXXXX)
chmod 755 "$W"
trap bench_cleanup EXIT
: >"$W/rows"

PGPORT=$(free_port)
start_postgres
psql_() { "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -X -q "$@"; }
psql_ -c "CREATE DATABASE bench" postgres
log "loading $ROWS deals"
psql_ bench <<SQL
CREATE TABLE deals (id bigint PRIMARY KEY, stage text NOT NULL, owner int NOT NULL,
                    amount numeric(12,2) NOT NULL, created date NOT NULL);
INSERT INTO deals SELECT g, (ARRAY['lead','qualified','proposal','won','lost'])[1 + g % 5],
       g % 200, (g::bigint * 7919 % 100000) / 100.0, date '2024-01-01' + (g % 700)
FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE deals;
SQL
"$PGBENCH" -h 127.0.0.1 -p "$PGPORT" -U postgres -i -q -s 1 bench >/dev/null 2>&1

# The heavy dashboard read: pipeline value per stage and owner band over the last year.
cat >"$W/heavy.sql" <<'SQL'
SELECT stage, owner / 20 AS band, count(*), sum(amount), avg(amount)::numeric(12,2), max(created) FROM deals WHERE created >= date '2024-06-01' GROUP BY stage, owner / 20 ORDER BY stage, band;
SQL
ms=$(psql_ -At bench <<SQL | awk '/^Time:/ {print $2}' | tail -1
\timing on
$(cat "$W/heavy.sql")
$(cat "$W/heavy.sql")
SQL
)
log "heavy aggregate on PostgreSQL alone: ${ms:-?} ms"
raw_ms=$ms

start_vigil() { # $1 name, $2 port, $3 with cache (true|false)
    local admin cache=""
    admin=$(free_port)
    cat >"$W/rules.yaml" <<'YAML'
rules:
  - name: deal dashboards
    table: deals
    ttl: 600
YAML
    if [ "$3" = true ]; then
        cache=$(printf '[cache]\nbackend = "memory"\nrules = "%s"\n' "$W/rules.yaml")
    fi
    cat >"$W/$1.toml" <<TOML
[admin]
listen = "127.0.0.1:$admin"

[pg]
listen = "127.0.0.1:$2"
pool_mode = "transaction"
pool_size = 16
auth_type = "trust"

[[pg.databases]]
name = "bench"
url = "postgres://postgres@127.0.0.1:$PGPORT/bench"

$cache

[telemetry]
log_level = "warn"
TOML
    "$VIGIL_BIN" run --config "$W/$1.toml" >"$W/$1.log" 2>&1 &
    track $!
    wait_port "$2" 30 || die "$1 did not start (see $W/$1.log)"
}

VPORT=$(free_port)
start_vigil cached "$VPORT" true
NPORT=$(free_port)
start_vigil nocache "$NPORT" false

# pgbench run -> "tps p50_ms p99_ms" (percentiles from the per-transaction log).
run_pgbench() { # $1 port, $2 label, then pgbench args
    local port=$1 label=$2
    shift 2
    rm -f "$W"/log_"$label"*
    local out
    out=$("$PGBENCH" -h 127.0.0.1 -p "$port" -U postgres -n -c 16 -j 2 -T "$T" \
        -l --log-prefix="$W/log_$label" "$@" bench 2>&1) || { log "pgbench $label failed: $out"; echo "- - -"; return; }
    local tps
    tps=$(echo "$out" | awk '/^tps/ {print $3; exit}')
    cat "$W"/log_"$label"* | awk '{print $3 / 1000.0}' | sort -g >"$W/lat_$label"
    local n p50 p99
    n=$(wc -l <"$W/lat_$label")
    p50=$(awk -v n="$n" 'NR == int(n * 0.50) + 1 {print; exit}' "$W/lat_$label")
    p99=$(awk -v n="$n" 'NR == int(n * 0.99) + 1 {print; exit}' "$W/lat_$label")
    echo "$tps $p50 $p99"
}

# Warm the cache (one fill) and the pools.
"$PGBENCH" -h 127.0.0.1 -p "$VPORT" -U postgres -n -c 2 -t 5 -f "$W/heavy.sql" bench >/dev/null 2>&1 || true
d_tps=() d_p50=() d_p99=() v_tps=() v_p50=() v_p99=() s_on=() s_off=()
for r in $(seq "$ROUNDS"); do
    log "round $r: heavy aggregate direct"
    read -r a b c < <(run_pgbench "$PGPORT" direct -f "$W/heavy.sql")
    d_tps+=("$a") d_p50+=("$b") d_p99+=("$c")
    log "round $r: heavy aggregate through Vigil with the cache"
    read -r a b c < <(run_pgbench "$VPORT" vigil -f "$W/heavy.sql")
    v_tps+=("$a") v_p50+=("$b") v_p99+=("$c")
    log "round $r: pgbench -S through Vigil, cache on (not matching) / no cache"
    read -r a _ _ < <(run_pgbench "$VPORT" son -S -M simple)
    s_on+=("$a")
    read -r a _ _ < <(run_pgbench "$NPORT" soff -S -M simple)
    s_off+=("$a")
    log "round $r: direct ${d_tps[-1]} tps p99 ${d_p99[-1]} ms | vigil ${v_tps[-1]} tps p50 ${v_p50[-1]} p99 ${v_p99[-1]} ms | -S cache-on ${s_on[-1]} / off ${s_off[-1]}"
done
dt=$(median "${d_tps[@]}") vt=$(median "${v_tps[@]}")
dp50=$(median "${d_p50[@]}") vp50=$(median "${v_p50[@]}")
dp99=$(median "${d_p99[@]}") vp99=$(median "${v_p99[@]}")
son=$(median "${s_on[@]}") soff=$(median "${s_off[@]}")
r=$(ratio "$vt" "$dt")
row "cache: heavy aggregate, 16 clients" "tps" "$(fmt0 "$vt")" "direct" "$(fmt0 "$dt")" "${r}x" ">=50x" "$(met "$r" '>=' 50)"
row "cache: heavy aggregate, 16 clients" "p99 ms" "$(fmt2 "$vp99")" "direct" "$(fmt2 "$dp99")" "$(ratio "$vp99" "$dp99")x" "<=2 ms" "$(met "$vp99" '<=' 2)"
row "cache: heavy aggregate, 16 clients" "p50 ms" "$(fmt2 "$vp50")" "direct" "$(fmt2 "$dp50")" "$(ratio "$vp50" "$dp50")x" "-" "-"
r=$(ratio "$son" "$soff")
row "cache: pgbench -S, cache on but not matching" "tps" "$(fmt0 "$son")" "vigil without cache" "$(fmt0 "$soff")" "${r}x" ">=0.97x" "$(met "$r" '>=' 0.97)"
log "heavy aggregate alone: ${raw_ms:-?} ms; rounds: ${ROUNDS} x ${T}s; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$W/rows"
