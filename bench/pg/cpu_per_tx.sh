#!/usr/bin/env bash
# bench/pg/cpu_per_tx.sh: the proxy's CPU per transaction (utime+stime from /proc/PID/stat over a
# pgbench run, divided by the transactions), alternating contenders, for noisy machines where tps
# swings more than the differences being measured. See bench/pg/PROFILE.md.
#
#   bench/pg/cpu_per_tx.sh [--rounds N] [--secs T] [--strace] CONTENDER...
#
# CONTENDER: `pgbouncer` (transaction mode, or session mode for -M prepared before 1.21), `direct`
# (tps only), or `LABEL=BINARY[,threads=N][,stats=true|false]` (a `vigil run`; threads defaults to
# the binary's default, stats to true). PG_MODE (prepared|extended|simple, default prepared),
# PG_SCALE (default 10). --strace counts the syscalls of one extra run per contender
# (`strace -f -c`), printed per transaction. Prints one line per run and a median summary.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../harness/lib.sh
. "$ROOT/bench/harness/lib.sh"
ROUNDS=3 SECS=10 STRACE=0
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --secs) SECS=$2; shift ;;
    --strace) STRACE=1 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) break ;;
    esac
    shift
done
[ $# -gt 0 ] || die "no contenders (see --help)"
PGBIN=$(find_pgbin)
W=$(mktemp -d /tmp/vigil-cpu.XXXXXX)
chmod 755 "$W"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
VIGIL_BIN=${VIGIL_BIN:-/nonexistent}
# shellcheck source=pg.sh
. "$ROOT/bench/pg/pg.sh"

PGPORT=$(free_port)
start_postgres
as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -qc "CREATE DATABASE bench" postgres >/dev/null
"$PGBENCH" -i -q -s "${PG_SCALE:-10}" -h 127.0.0.1 -p "$PGPORT" -U postgres bench >"$W/pgbench-init.log" 2>&1 ||
    die "pgbench -i failed"

declare -A port pid
labels=()
for c in "$@"; do
    case $c in
    direct) port[direct]=$PGPORT; pid[direct]=; labels+=(direct) ;;
    pgbouncer)
        p=$(free_port)
        if [ "${PG_MODE:-prepared}" = prepared ] && ! pgbouncer_has_prepared; then m=session; else m=transaction; fi
        start_pgbouncer pgbouncer "$m" "$p"
        port[pgbouncer]=$p; pid[pgbouncer]=$(cat "$W/pgbouncer.pid"); labels+=(pgbouncer)
        ;;
    *=*)
        label=${c%%=*} rest=${c#*=}
        bin=${rest%%,*} threads= stats=true
        IFS=, read -ra opts <<<"${rest#"$bin"}"
        for o in "${opts[@]}"; do
            case $o in threads=*) threads=${o#threads=} ;; stats=*) stats=${o#stats=} ;; "") ;; *) die "unknown option $o" ;; esac
        done
        p=$(free_port)
        VIGIL_BIN=$bin VIGIL_PG_THREADS=$threads start_vigil_pg "$label" "$stats" "$p"
        port[$label]=$p; pid[$label]=$(cat "$W/$label.pid"); labels+=("$label")
        ;;
    *) die "bad contender $c" ;;
    esac
done

ticks() { awk '{print $14, $15}' "/proc/$1/stat"; } # utime stime
CLK=$(getconf CLK_TCK)
bench_once() { # port secs -> "tps transactions"
    local out
    out=$("$PGBENCH" -n -S -M "${PG_MODE:-prepared}" -c 16 -j 2 -T "$2" -h 127.0.0.1 -p "$1" -U postgres bench 2>&1) || {
        log "pgbench failed on $1: $(echo "$out" | grep -iE 'error|abort' | head -1)"; echo "0 0"; return 0; }
    echo "$(echo "$out" | awk '/^tps = / {print $3; exit}') $(echo "$out" | awk '/actually processed/ {split($NF,a,"/"); print a[1]; exit}')"
}

log "warm-up"
for l in "${labels[@]}"; do bench_once "${port[$l]}" 3 >/dev/null; done
declare -A all_tps all_cpu
for r in $(seq 1 "$ROUNDS"); do
    for l in "${labels[@]}"; do
        p=${pid[$l]}
        t0=; [ -n "$p" ] && t0=$(ticks "$p")
        read -r tps n < <(bench_once "${port[$l]}" "$SECS")
        cpu=- split=
        if [ -n "$p" ] && [ "${n:-0}" -gt 0 ]; then
            read -r cpu split < <(awk -v a="$t0" -v b="$(ticks "$p")" -v n="$n" -v k="$CLK" 'BEGIN {
                split(a, x, " "); split(b, y, " "); u = (y[1] - x[1]) / k * 1e6 / n; s = (y[2] - x[2]) / k * 1e6 / n
                printf "%.1f (user=%.1f,sys=%.1f)\n", u + s, u, s }')
        fi
        printf 'round %s %-14s tps=%8.0f cpu_us_per_tx=%s %s load=%s\n' "$r" "$l" "$tps" "$cpu" "$split" "$(cut -d' ' -f1 /proc/loadavg)"
        all_tps[$l]="${all_tps[$l]:-} $tps"; all_cpu[$l]="${all_cpu[$l]:-} $cpu"
    done
done
echo "median over $ROUNDS rounds (-M ${PG_MODE:-prepared}, -c 16 -j 2, ${SECS}s):"
for l in "${labels[@]}"; do
    # shellcheck disable=SC2086
    printf '  %-14s tps=%8.0f cpu_us_per_tx=%s\n' "$l" "$(median ${all_tps[$l]})" "$(median ${all_cpu[$l]} | grep . || echo -)"
done

if [ "$STRACE" = 1 ]; then
    for l in "${labels[@]}"; do
        p=${pid[$l]}
        [ -n "$p" ] || continue
        strace -f -c -p "$p" -o "$W/strace-$l.txt" &
        s=$!
        sleep 1
        read -r _ n < <(bench_once "${port[$l]}" 5)
        kill -INT "$s" 2>/dev/null || true
        wait "$s" 2>/dev/null || true
        echo "syscalls per transaction, $l ($n transactions under strace):"
        awk -v n="$n" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {printf "  %-16s %.3f\n", $NF, $4 / n}' "$W/strace-$l.txt" | sort -k2 -gr | head -8
    done
fi
