# shellcheck shell=bash
# PostgreSQL benchmarks for bench/run (sourced): pgbench direct / Vigil / PgBouncer, the
# statistics-path cost, and RSS per idle client. Needs: $W, $PGBIN, $PGPORT, $VIGIL_BIN, $ROOT,
# the helpers of bench/harness/lib.sh, and $PG_T (pgbench seconds), $ROUNDS, $MEM_CLIENTS.

PGBENCH=${PGBENCH:-$(command -v pgbench || echo "$PGBIN/pgbench")}

# Start `vigil run` with a [pg] section; $1 name, $2 queries enabled (true|false), $3 port.
# VIGIL_PG_THREADS sets `[pg] threads` (the binary's default when unset).
start_vigil_pg() {
    local name=$1 stats=$2 port=$3 admin
    admin=$(free_port)
    cat >"$W/$name.toml" <<EOF
[admin]
listen = "127.0.0.1:$admin"

[pg]
listen = "127.0.0.1:$port"
${VIGIL_PG_THREADS:+threads = $VIGIL_PG_THREADS}
pool_mode = "transaction"
pool_size = 20
auth_type = "trust"

[[pg.databases]]
name = "bench"
url = "postgres://postgres@127.0.0.1:$PGPORT/bench"

[queries]
enabled = $stats

[telemetry]
log_level = "warn"
${VIGIL_PG_EXTRA:-}
EOF
    "$VIGIL_BIN" run --config "$W/$name.toml" >"$W/$name.log" 2>&1 &
    track $!
    echo $! >"$W/$name.pid"
    wait_port "$port" 30 || die "$name did not start (see $W/$name.log)"
}

PGB_VERSION=$(pgbouncer --version 2>/dev/null | awk 'NR==1 {print $2}')

# PgBouncer >= 1.21 keeps named prepared statements in transaction mode (max_prepared_statements).
pgbouncer_has_prepared() {
    [ -n "$PGB_VERSION" ] && [ "$(printf '%s\n1.21\n' "$PGB_VERSION" | sort -V | head -1)" = 1.21 ]
}

# Start PgBouncer; $1 name, $2 pool mode, $3 port.
start_pgbouncer() {
    local name=$1 mode=$2 port=$3 d="$W/$1"
    mkdir -p "$d"
    echo '"postgres" ""' >"$d/userlist.txt"
    cat >"$d/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$PGPORT dbname=bench user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $d/userlist.txt
pool_mode = $mode
default_pool_size = 20
max_client_conn = 10000
logfile = $d/pgbouncer.log
pidfile = $d/pgbouncer.pid
ignore_startup_parameters = extra_float_digits
listen_backlog = 4096
EOF
    if pgbouncer_has_prepared; then echo "max_prepared_statements = 512" >>"$d/pgbouncer.ini"; fi
    [ "$(id -u)" = 0 ] && chown -R postgres "$d"
    # runuser resets the open-files limit to the PAM default (1024): raise it again.
    as_pg sh -c "ulimit -n $(ulimit -Hn) && exec pgbouncer -d '$d/pgbouncer.ini'" >"$d/stdout.log" 2>&1 ||
        die "pgbouncer did not start (see $d)"
    wait_port "$port" 20 || die "pgbouncer did not listen (see $d/pgbouncer.log)"
    head -1 "$d/pgbouncer.pid" >"$W/$name.pid"
    cp "$d/pgbouncer.pid" "$W/$name.pidfile"
}

# pgbench -S -M prepared; $1 port, $2 seconds. Prints "tps latency_ms" (nothing on failure).
run_pgbench() {
    local port=$1 secs=$2 out
    out=$("$PGBENCH" -n -S -M "${PG_MODE:-prepared}" -c 16 -j 2 -T "$secs" -h 127.0.0.1 -p "$port" -U postgres bench 2>&1) || {
        log "pgbench on port $port failed: $(echo "$out" | grep -iE 'error|abort' | head -2)"
        return 0
    }
    local tps lat
    tps=$(echo "$out" | awk '/^tps = / {print $3; exit}')
    lat=$(echo "$out" | awk '/^latency average = / {print $4; exit}')
    echo "$tps $lat"
}

bench_pg() {
    log "pg: starting PostgreSQL and pgbench -i -s ${PG_SCALE:-10}"
    PGPORT=$(free_port)
    start_postgres
    as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -qc "CREATE DATABASE bench" postgres >/dev/null
    "$PGBENCH" -i -q -s "${PG_SCALE:-10}" -h 127.0.0.1 -p "$PGPORT" -U postgres bench >"$W/pgbench-init.log" 2>&1 ||
        die "pgbench -i failed (see $W/pgbench-init.log)"

    local vport vnport bport bmode
    vport=$(free_port); vnport=$(free_port); bport=$(free_port)
    start_vigil_pg vigil-pg true "$vport"
    start_vigil_pg vigil-pg-nostats false "$vnport"
    if pgbouncer_has_prepared; then bmode=transaction; else bmode=session; fi
    start_pgbouncer pgbouncer-pg "$bmode" "$bport"
    PGB_LABEL="pgbouncer $PGB_VERSION ($bmode)"

    local -A port=([direct]=$PGPORT [vigil]=$vport [vigil_nostats]=$vnport [pgbouncer]=$bport)
    local -A tps lat
    local order=(direct vigil vigil_nostats pgbouncer) t r res
    log "pg: warm-up (${PG_WARM:-5} s each)"
    for t in "${order[@]}"; do run_pgbench "${port[$t]}" "${PG_WARM:-5}" >/dev/null; done
    for r in $(seq 1 "$ROUNDS"); do
        for t in "${order[@]}"; do
            res=$(run_pgbench "${port[$t]}" "$PG_T")
            log "pg: round $r $t: tps=${res% *} latency_ms=${res#* }"
            raw "pg round $r $t tps=${res% *} latency_ms=${res#* }"
            tps[$t]="${tps[$t]:-} ${res% *}"
            lat[$t]="${lat[$t]:-} ${res#* }"
        done
    done
    local d v vn b vl dl bl
    # shellcheck disable=SC2086
    {
        d=$(median ${tps[direct]}); v=$(median ${tps[vigil]}); vn=$(median ${tps[vigil_nostats]})
        b=$(median ${tps[pgbouncer]}); vl=$(median ${lat[vigil]}); dl=$(median ${lat[direct]})
        bl=$(median ${lat[pgbouncer]})
    }
    local name="pg: pgbench -S -M prepared -c 16 -j 2 -T $PG_T"
    local r1 r2 r3
    r1=$(ratio "$v" "$d"); r2=$(ratio "$v" "$b"); r3=$(ratio "$v" "$vn")
    row "$name" "tps" "$(fmt0 "$v")" "direct PostgreSQL" "$(fmt0 "$d")" "${r1}x" ">=0.95x" "$(met "$r1" '>=' 0.95)"
    row "$name" "tps" "$(fmt0 "$v")" "$PGB_LABEL" "$(fmt0 "$b")" "${r2}x" ">=1.0x" "$(met "$r2" '>=' 1.0)"
    row "$name" "latency avg ms" "$(fmt2 "$vl")" "direct / pgbouncer" "$(fmt2 "$dl") / $(fmt2 "$bl")" \
        "$(ratio "$vl" "$dl")x / $(ratio "$vl" "$bl")x" "-" "-"
    row "pg: statistics path cost ([queries] on vs off)" "tps" "$(fmt0 "$v")" "vigil, [queries] enabled = false" \
        "$(fmt0 "$vn")" "${r3}x" ">=0.97x" "$(met "$r3" '>=' 0.97)"

    # Stop the pgbench-phase proxies before the memory benchmark (fresh processes there).
    for t in vigil-pg vigil-pg-nostats pgbouncer-pg; do kill "$(cat "$W/$t.pid")" 2>/dev/null || true; done
}

# RSS per idle client at $MEM_CLIENTS connections: Vigil vs PgBouncer (transaction mode both).
bench_pg_mem() {
    [ -n "${PGPORT:-}" ] || die "bench_pg_mem needs the PostgreSQL of bench_pg"
    local vport bport vj bj v b r
    vport=$(free_port); bport=$(free_port)
    start_vigil_pg vigil-mem true "$vport"
    start_pgbouncer pgbouncer-mem transaction "$bport"
    log "pg: RSS with $MEM_CLIENTS idle clients through Vigil"
    vj=$(python3 "$ROOT/bench/pg/idle_rss.py" --port "$vport" --pid "$(cat "$W/vigil-mem.pid")" --clients "$MEM_CLIENTS") || true
    log "pg: vigil $vj"
    raw "pg-mem vigil $vj"
    kill "$(cat "$W/vigil-mem.pid")" 2>/dev/null || true
    log "pg: RSS with $MEM_CLIENTS idle clients through PgBouncer"
    bj=$(python3 "$ROOT/bench/pg/idle_rss.py" --port "$bport" --pid "$(cat "$W/pgbouncer-mem.pid")" --clients "$MEM_CLIENTS") || true
    log "pg: pgbouncer $bj"
    raw "pg-mem pgbouncer $bj"
    v=$(echo "$vj" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["kib_per_client"] if d["failed"]==0 else "")' 2>/dev/null || true)
    b=$(echo "$bj" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["kib_per_client"] if d["failed"]==0 else "")' 2>/dev/null || true)
    r=$(ratio "$v" "$b")
    row "pg: RSS per idle client ($MEM_CLIENTS)" "KiB" "$(fmt2 "$v")" "pgbouncer $PGB_VERSION (transaction)" \
        "$(fmt2 "$b")" "${r}x" "<=10 KiB" "$(met "$v" '<=' 10)"
}
