# shellcheck shell=bash
# Shared helpers for bench/run: ports, processes, PostgreSQL as a non-root user, medians, rows.
# Sourced, not run. Every process a benchmark starts is recorded in $W/pids and ended by
# bench_cleanup (by pid, never by name).

# A free TCP port on 127.0.0.1 (the kernel picks it; never 5432/6379 in practice).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Run a command as the postgres user when we are root (initdb/postgres/pgbouncer refuse root).
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Record a pid for cleanup.
track() { echo "$1" >>"$W/pids"; }

bench_cleanup() {
    [ -n "${W:-}" ] && [ -d "$W" ] || return 0
    if [ -f "$W/pids" ]; then
        while read -r p; do kill "$p" 2>/dev/null || true; done <"$W/pids"
        sleep 0.5
        while read -r p; do kill -9 "$p" 2>/dev/null || true; done <"$W/pids"
    fi
    for pf in "$W"/*.pidfile; do
        [ -f "$pf" ] && kill "$(head -1 "$pf")" 2>/dev/null || true
    done
    if [ -d "$W/pgdata" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$W/pgdata" -m immediate stop >/dev/null 2>&1 || true
    fi
    if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $W"; else rm -rf "$W"; fi
}

# Wait until a TCP port accepts connections (or fail after $2 seconds, default 20).
wait_port() {
    local port=$1 limit=${2:-20} i=0
    while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -gt $((limit * 10)) ] && return 1
        sleep 0.1
    done
}

# Median of the numbers given as arguments (empty when none).
median() {
    printf '%s\n' "$@" | { grep -E '^[0-9.]+$' || true; } | sort -g | awk '{a[NR]=$1} END {
        if (NR == 0) exit; if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2 }'
}

# ratio A B -> "A/B" with 2 decimals ("-" when either is missing or B is 0).
ratio() {
    awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}

# cmp VALUE OP TARGET -> yes/no ("-" when VALUE is missing). OP is >= or <=.
met() {
    awk -v v="${1:-}" -v op="$2" -v t="$3" 'BEGIN {
        if (v == "" || v == "-") { print "-"; exit }
        if (op == ">=") print (v + 0 >= t + 0) ? "yes" : "no"; else print (v + 0 <= t + 0) ? "yes" : "no" }'
}

# Round a number for the table.
fmt0() { awk -v v="${1:-}" 'BEGIN { if (v == "") print "-"; else printf "%.0f", v }'; }
fmt2() { awk -v v="${1:-}" 'BEGIN { if (v == "") print "-"; else printf "%.2f", v }'; }

# Append one table row: benchmark metric vigil peer peer_value ratio target met.
row() {
    local IFS='|'
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" >>"$W/rows"
}

# Raw per-round measurements, kept for RESULTS.md.
raw() { printf '%s\n' "$*" >>"$W/raw"; }

# The newest PostgreSQL server binaries.
find_pgbin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$d" ] || d=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
    echo "$d"
}

# Start a throwaway PostgreSQL on $PGPORT in $W/pgdata (trust auth on loopback, fsync off).
start_postgres() {
    mkdir -p "$W/pgdata" "$W/pgsock"
    [ "$(id -u)" = 0 ] && chown postgres "$W/pgdata" "$W/pgsock"
    as_pg "$PGBIN/initdb" -D "$W/pgdata" -U postgres --auth=trust -E UTF8 --no-sync >"$W/initdb.log" 2>&1 ||
        die "initdb failed (see $W/initdb.log)"
    as_pg "$PGBIN/pg_ctl" -D "$W/pgdata" -l "$W/pgsock/postgres.log" -w -t 60 \
        -o "-p $PGPORT -k $W/pgsock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
            -c full_page_writes=off -c max_connections=300 -c shared_buffers=256MB" start >/dev/null ||
        die "PostgreSQL did not start (see $W/pgsock/postgres.log)"
}

# Resident set size (VmRSS) of a pid, KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
