# shellcheck shell=bash
# HTTP benchmark for bench/run (sourced): wrk -t2 -c64 against a small JSON backend directly,
# through Vigil's reverse proxy (metrics on, OpenTelemetry spans exported over OTLP/HTTP), and
# through nginx proxy_pass with a keepalive upstream. Needs $W, $VIGIL_BIN, $HTTP_D (seconds),
# $ROUNDS and bench/harness/lib.sh.

JSON_BODY='{"id":42,"name":"Ada Lovelace","company_id":7,"status":"active","tags":["vip","newsletter"],"updated_at":"2026-11-27T10:00:00Z"}'

# nginx as root runs its workers as root here (throwaway, loopback only).
nginx_user_line() { if [ "$(id -u)" = 0 ]; then echo "user root;"; fi; }

# $1 name, $2 worker_processes, $3 the server block(s).
start_nginx() {
    local name=$1 workers=$2 d="$W/$1"
    mkdir -p "$d/tmp"
    cat >"$d/nginx.conf" <<EOF
$(nginx_user_line)
worker_processes $workers;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    keepalive_requests 1000000;
$3
}
EOF
    nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" >"$d/stdout.log" 2>&1 &
    track $!
    echo $! >"$W/$name.pid"
}

# wrk; $1 url, $2 seconds. Prints "req_per_s p99_ms errors".
run_wrk() {
    local out
    out=$(wrk -t2 -c64 -d"$2"s --latency "$1" 2>&1) || { log "wrk failed: $out"; return 0; }
    local rps p99 errs
    rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; print v}')
    errs=$(echo "$out" | awk '/Non-2xx/ {n+=$NF} /Socket errors/ {gsub(/,/,""); n+=$4+$6+$8+$10} END {print n+0}')
    echo "$rps $p99 $errs"
}

# `vigil run` with an [http] section; $1 name, $2 port, $3 backend port, $4 extra [telemetry] line.
# VIGIL_HTTP_THREADS sets `[http] threads` (default: the binary's default).
start_vigil_http() {
    cat >"$W/$1.toml" <<EOF
[admin]
listen = "127.0.0.1:$(free_port)"

[http]
listen = "127.0.0.1:$2"
upstream = ["http://127.0.0.1:$3"]
access_log = false
${VIGIL_HTTP_THREADS:+threads = $VIGIL_HTTP_THREADS}

[telemetry]
log_level = "warn"
service_name = "vigil-bench"
$4
EOF
    "$VIGIL_BIN" run --config "$W/$1.toml" >"$W/$1.log" 2>&1 &
    track $!
    echo $! >"$W/$1.pid"
}

bench_http() {
    local be np vp vq
    be=$(free_port); np=$(free_port); vp=$(free_port); vq=$(free_port)
    start_nginx http-backend 1 "    server {
        listen 127.0.0.1:$be;
        location / { default_type application/json; return 200 '$JSON_BODY'; }
        location = /healthz { return 200 'ok'; }
        # OTLP/HTTP sink for Vigil's spans: the body is read and discarded.
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
    wait_port "$be" 20 || die "nginx backend did not start (see $W/http-backend/error.log)"
    wait_port "$np" 20 || die "nginx proxy did not start (see $W/http-nginx/error.log)"
    wait_port "$vp" 30 || die "vigil http did not start (see $W/vigil-http.log)"
    wait_port "$vq" 30 || die "vigil http did not start (see $W/vigil-http-nootel.log)"

    local path=/api/contacts/42
    local -A url=([direct]="http://127.0.0.1:$be$path" [vigil]="http://127.0.0.1:$vp$path" [nginx]="http://127.0.0.1:$np$path" [vigil_nootel]="http://127.0.0.1:$vq$path")
    local -A rps p99
    local order=(direct vigil nginx vigil_nootel) t r res
    log "http: warm-up (${HTTP_WARM:-5} s each)"
    for t in "${order[@]}"; do run_wrk "${url[$t]}" "${HTTP_WARM:-5}" >/dev/null; done
    for r in $(seq 1 "$ROUNDS"); do
        for t in "${order[@]}"; do
            res=$(run_wrk "${url[$t]}" "$HTTP_D")
            read -r a b c <<<"$res"
            log "http: round $r $t: req/s=$a p99_ms=$b errors=$c"
            raw "http round $r $t req_per_s=$a p99_ms=$b errors=$c"
            [ "${c:-1}" = 0 ] || { log "http: $t had errors; round value dropped"; continue; }
            rps[$t]="${rps[$t]:-} $a"
            p99[$t]="${p99[$t]:-} $b"
        done
    done
    # Spans exported: the backend logs only the OTLP posts.
    raw "http otlp POST /v1/traces batches received: $(wc -l <"$W/http-backend/otlp.log" 2>/dev/null || echo 0)"
    local d v n dp vp99 np99 vo vop
    # shellcheck disable=SC2086
    {
        d=$(median ${rps[direct]}); v=$(median ${rps[vigil]}); n=$(median ${rps[nginx]})
        dp=$(median ${p99[direct]}); vp99=$(median ${p99[vigil]}); np99=$(median ${p99[nginx]})
        vo=$(median ${rps[vigil_nootel]}); vop=$(median ${p99[vigil_nootel]})
    }
    local name="http: wrk -t2 -c64 -d${HTTP_D}s, JSON"
    local r1 r2 r3
    r1=$(ratio "$v" "$n"); r2=$(ratio "$vp99" "$np99"); r3=$(ratio "$v" "$d")
    row "$name" "req/s" "$(fmt0 "$v")" "nginx $(nginx -v 2>&1 | sed 's|.*/||') proxy_pass keepalive" "$(fmt0 "$n")" "${r1}x" ">=1.1x" "$(met "$r1" '>=' 1.1)"
    row "$name" "p99 ms" "$(fmt2 "$vp99")" "nginx proxy_pass keepalive" "$(fmt2 "$np99")" "${r2}x" "<=1.0x" "$(met "$r2" '<=' 1.0)"
    row "$name" "req/s" "$(fmt0 "$v")" "backend direct (no proxy)" "$(fmt0 "$d")" "${r3}x" "-" "-"
    row "$name" "p99 ms" "$(fmt2 "$vp99")" "backend direct (no proxy)" "$(fmt2 "$dp")" "$(ratio "$vp99" "$dp")x" "-" "-"
    row "$name, OTLP export off" "req/s" "$(fmt0 "$vo")" "nginx proxy_pass keepalive" "$(fmt0 "$n")" "$(ratio "$vo" "$n")x" "(>=1.1x with tracing on)" "-"
    row "$name, OTLP export off" "p99 ms" "$(fmt2 "$vop")" "nginx proxy_pass keepalive" "$(fmt2 "$np99")" "$(ratio "$vop" "$np99")x" "-" "-"
    for t in http-backend http-nginx vigil-http vigil-http-nootel; do kill "$(cat "$W/$t.pid")" 2>/dev/null || true; done
}
