#!/usr/bin/env bash
# CPU per request of the HTTP proxies, robust to a loaded machine: the same setup as
# bench/http/http.sh (small JSON backend on nginx, Vigil with metrics and OTLP export to a sink,
# Vigil without OTLP, nginx proxy_pass keepalive), wrk -t2 -c64 alternated, and for each run the
# proxy's utime+stime from /proc/PID/stat (nginx: master plus workers) divided by the requests
# wrk completed, split into user and system time, and the whole machine's busy time per request
# (wrk, backend and proxy together). Prints one line per run and the median per contender.
#
#   VIGIL_BIN=target/release/vigil bench/http/cpu.sh [seconds per run, default 10] [rounds, default 3]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../harness/lib.sh
. "$ROOT/bench/harness/lib.sh"
# shellcheck source=http.sh
. "$ROOT/bench/http/http.sh"
: "${VIGIL_BIN:?set VIGIL_BIN to a release build of vigil}"
D=${1:-10} ROUNDS=${2:-3}
W=$(mktemp -d /tmp/vigil-httpcpu.XXXXXX)
trap bench_cleanup EXIT
CLK=$(getconf CLK_TCK)

# "utime stime" in ticks of the given pids (per-process totals, threads included).
ticks() {
    local u=0 s=0 p a b
    for p in "$@"; do
        read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null || echo 0 0)
        u=$((u + a)) s=$((s + b))
    done
    echo "$u $s"
}
# Busy and idle ticks of the whole machine (/proc/stat; iowait counts as idle).
machine() {
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat
}
pids_of() {
    local main
    main=$(cat "$W/$1.pid")
    echo "$main $(pgrep -P "$main" | tr '\n' ' ')"
}

be=$(free_port); np=$(free_port); vp=$(free_port); vq=$(free_port)
start_nginx http-backend 1 "    server {
        listen 127.0.0.1:$be;
        location / { default_type application/json; return 200 '$JSON_BODY'; }
        location = /v1/traces { client_max_body_size 0; access_log $W/http-backend/otlp.log; return 200 ''; }
    }"
start_nginx http-nginx auto "    upstream crm { server 127.0.0.1:$be; keepalive 64; }
    server {
        listen 127.0.0.1:$np;
        location / {
            proxy_pass http://crm;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }"
start_vigil_http vigil-http "$vp" "$be" "otlp_endpoint = \"http://127.0.0.1:$be\""
start_vigil_http vigil-http-nootel "$vq" "$be" ""
for p in $be $np $vp $vq; do wait_port "$p" 30 || die "port $p did not open (see $W)"; done
sleep 1

path=/api/contacts/42
declare -A url=([vigil]="http://127.0.0.1:$vp$path" [nginx]="http://127.0.0.1:$np$path" [vigil_nootel]="http://127.0.0.1:$vq$path")
declare -A pid=([vigil]=vigil-http [nginx]=http-nginx [vigil_nootel]=vigil-http-nootel)
declare -A us rps
for t in vigil nginx vigil_nootel; do wrk -t2 -c64 -d2s "${url[$t]}" >/dev/null; done
log "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
    for t in vigil nginx vigil_nootel; do
        # shellcheck disable=SC2046
        set -- $(pids_of "${pid[$t]}")
        before=$(ticks "$@")
        read -r mb ib <<<"$(machine)"
        out=$(wrk -t2 -c64 -d"$D"s --latency "${url[$t]}")
        read -r ma ia <<<"$(machine)"
        after=$(ticks "$@")
        n=$(echo "$out" | awk '/requests in/ {print $1}')
        rs=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
        p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
        read -r ub sb <<<"$before"
        read -r ua sa <<<"$after"
        cpu=$(awk -v u=$((ua - ub)) -v s=$((sa - sb)) -v n="$n" -v hz="$CLK" 'BEGIN {printf "%.1f", (u + s) / hz * 1e6 / n}')
        split=$(awk -v u=$((ua - ub)) -v s=$((sa - sb)) -v n="$n" -v hz="$CLK" 'BEGIN {printf "user=%.1f,sys=%.1f", u / hz * 1e6 / n, s / hz * 1e6 / n}')
        # Everything the machine ran per request (wrk, backend, proxy, the rest), and its idle share.
        mach=$(awk -v b=$((ma - mb)) -v i=$((ia - ib)) -v n="$n" -v hz="$CLK" 'BEGIN {printf "machine_busy_us_per_req=%.1f idle=%.0f%%", b / hz * 1e6 / n, 100 * i / (b + i)}')
        log "round $r $t: requests=$n req/s=$rs p99=$p99 cpu_us_per_req=$cpu ($split) $mach"
        us[$t]="${us[$t]:-} $cpu"
        rps[$t]="${rps[$t]:-} $rs"
    done
done
for t in vigil nginx vigil_nootel; do
    # shellcheck disable=SC2086
    echo "$t: median cpu_us_per_req=$(median ${us[$t]}) median req/s=$(median ${rps[$t]})"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
