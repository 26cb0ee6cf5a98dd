#!/usr/bin/env bash
# bench/pg/instr_per_tx.sh: user-space instructions per transaction of the pg proxy, counted by
# valgrind's callgrind (repeatable whatever else the machine does; kernel time is not counted).
# For A/B comparisons of hot-path changes and of the statistics path's cost, where tps on 2
# shared cores swings more than the difference being measured. See bench/pg/PROFILE.md.
#
#   bench/pg/instr_per_tx.sh [--tx N] LABEL=BINARY[,stats=true|false]...
#
# Each contender: `vigil run` under callgrind ([pg] transaction mode, pool 20, trust), a
# warm-up (pool, prepared statements, fingerprint caches), counters zeroed, then
# `pgbench -n -S -M $PG_MODE -c 4 -j 1 -t N` (N per client, default 1500), counters dumped.
# PG_MODE: prepared (default), extended or simple. VIGIL_PG_EXTRA: TOML appended to each
# contender's config (a `[cache]` section, say). CG_OUT=DIR keeps each contender's callgrind
# output as DIR/LABEL.cg (for callgrind_annotate). Needs valgrind (Debian package).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../harness/lib.sh
. "$ROOT/bench/harness/lib.sh"
TX=1500
while [ $# -gt 0 ]; do
    case $1 in
    --tx) TX=$2; shift ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) break ;;
    esac
    shift
done
[ $# -gt 0 ] || die "no contenders (see --help)"
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || die "needs valgrind"
PGBIN=$(find_pgbin)
W=$(mktemp -d /tmp/vigil-instr.XXXXXX)
chmod 755 "$W"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
VIGIL_BIN=/nonexistent
# shellcheck source=pg.sh
. "$ROOT/bench/pg/pg.sh"

PGPORT=$(free_port)
start_postgres
as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -qc "CREATE DATABASE bench" postgres >/dev/null
"$PGBENCH" -i -q -s 1 -h 127.0.0.1 -p "$PGPORT" -U postgres bench >"$W/pgbench-init.log" 2>&1 ||
    die "pgbench -i failed"

MODE=${PG_MODE:-prepared}
for c in "$@"; do
    label=${c%%=*} rest=${c#*=} stats=true
    bin=${rest%%,*}
    case $rest in *,stats=false*) stats=false ;; esac
    [ -x "$bin" ] || die "$bin is not executable"
    # `exec` keeps the pid: callgrind_control addresses the process start_vigil_pg tracked.
    printf '#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s/%s.cg "%s" "$@"\n' \
        "$W" "$label" "$bin" >"$W/$label.sh"
    chmod +x "$W/$label.sh"
    p=$(free_port)
    VIGIL_BIN="$W/$label.sh" start_vigil_pg "$label" "$stats" "$p"
    vp=$(cat "$W/$label.pid")
    run() { "$PGBENCH" -n -S -M "$MODE" -c 4 -j 1 -t "$1" -h 127.0.0.1 -p "$p" -U postgres bench 2>&1; }
    run 200 >/dev/null || die "$label: warm-up pgbench failed"
    callgrind_control -z "$vp" >/dev/null 2>&1
    out=$(run "$TX") || die "$label: pgbench failed"
    callgrind_control -d "$vp" >/dev/null 2>&1
    kill "$vp" 2>/dev/null || true
    n=$(echo "$out" | awk '/actually processed/ {split($NF, a, "/"); print a[1]; exit}')
    ir=$(awk '/^summary:/ {print $2; exit}' "$W/$label.cg.1")
    [ -z "${CG_OUT:-}" ] || cp "$W/$label.cg.1" "$CG_OUT/$label.cg"
    printf '%-14s stats=%-5s -M %s: %s transactions, %s instructions, %d per transaction\n' \
        "$label" "$stats" "$MODE" "$n" "$ir" "$((ir / n))"
done
