#!/usr/bin/env bash
# The benchmark: the gateway next to nginx and the direct upstream, in one
# run, interleaved (every scenario once per round, ROUNDS rounds; medians).
#
#   bash bench/run.sh
#
# Builds with the dist profile (thin LTO), installs nginx and wrk from Debian when missing,
# starts a minimal upstream (bench/src/bin/upstream.rs), nginx proxying to it
# with upstream keep-alive, the stack's floor (bench/src/bin/floor.rs: the
# least an actix-web + awc forwarder does, every row is also given as a
# ratio to it), the users service and three gateways (10 routes,
# 10 routes with the Redis limiter, 1,000 routes), an HTTPS gateway next to
# an HTTPS nginx (TLS 1.3, one self-signed certificate made here with openssl,
# for both), two gateways that differ only in tracing (off, and on at 1%
# sampling exporting OTLP/HTTP to a sink nginx answers), a gateway that
# trusts a test identity provider beside HAProxy verifying the same ES256
# tokens with jwt_verify (one token, then IDP_TOKENS (10,000) distinct ones
# per round: the cache-miss path), then drives load with wrk.
# Servers run on one core and wrk on the other when there are two or more.
# Prints a markdown table and the target ratios, and rewrites the results
# section of bench/README.md.
#
# Settings: ROUNDS (3), DURATION seconds per measurement (5), CONNS (50), IDP_TOKENS (10000),
# REDIS_URL (redis://127.0.0.1:6379), UPDATE_README (1), PROFILE (dist: thin
# LTO, which the gateway measurably gains from; release is 8-9% slower),
# BASELINE (a directory holding another build's `gateway` binary: it runs
# beside this build's with the same configuration, and its public route and
# route 4 are measured in the same rounds, so a change is judged against the
# code before it in one run).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
CONNS="${CONNS:-50}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
UPDATE_README="${UPDATE_README:-1}"
PROFILE="${PROFILE:-dist}"
BASELINE="${BASELINE:-}"
T="${CARGO_TARGET_DIR:-$PWD/target}/$PROFILE"

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
command -v openssl >/dev/null || need+=(openssl)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
if [ "${#need[@]}" -gt 0 ]; then  # nginx, wrk, openssl and haproxy from Debian
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need[@]}"
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"

cargo build --profile "$PROFILE" -q -p gateway -p users -p bench

W="$(mktemp -d)"
chmod 755 "$W"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

if [ "$(nproc)" -ge 2 ]; then SRV="taskset -c 1"; LOAD="taskset -c 0"; else SRV=""; LOAD=""; fi
UP=19001 NGX=19002 GW=19003 GWR=19004 GW1K=19005 USERS=19006 GWB=19007 GWS=19008 NGXS=19009
GWOFF=19010 GWTR=19011 SINK=19012 FLOOR=19013 GWC=19014 IDP=19015 HAP=19016 GWI=19017
IDP_TOKENS="${IDP_TOKENS:-10000}"
IDP_ISS="https://idp.bench.test"

# -k: the HTTPS servers use the certificate made below.
wait_http() { for _ in $(seq 1 150); do curl -kfsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done; echo "not answering: $1" >&2; return 1; }

# One certificate for both HTTPS servers (ECDSA P-256, as a managed
# certificate usually is), valid for 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$W/tls.key" -out "$W/tls.crt" 2>/dev/null

# A test identity provider for rows 16-17: an ES256 key (P-256), its key
# set (served by nginx below), one token, and for each round its own
# IDP_TOKENS distinct tokens of one user (bench/src/bin/tokens.rs).
mkdir -p "$W/idp"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/idp/key.pem" 2>/dev/null
openssl pkey -in "$W/idp/key.pem" -pubout -out "$W/idp/pub.pem"
openssl pkey -pubin -in "$W/idp/pub.pem" -outform DER -out "$W/idp/pub.der"
python3 - "$W/idp/pub.der" >"$W/idp/jwks.json" <<'PY'
import base64, json, sys
point = open(sys.argv[1], "rb").read()[-64:]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
print(json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "kid": "bench-1", "alg": "ES256",
                            "use": "sig", "x": b64(point[:32]), "y": b64(point[32:])}]}))
PY
IDP_TOKEN="$("$T/tokens" "$W/idp/key.pem" "$IDP_ISS" 1 one)"
for round in $(seq 1 "$ROUNDS"); do
  "$T/tokens" "$W/idp/key.pem" "$IDP_ISS" "$IDP_TOKENS" "round$round" >"$W/idp/tokens-$round.txt"
  cat >"$W/tokens-$round.lua" <<EOF
local tokens = {}
for line in io.lines("$W/idp/tokens-$round.txt") do tokens[#tokens + 1] = "Bearer " .. line end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/idp/x", { ["Authorization"] = tokens[i] })
end
EOF
done

# The upstream.
$SRV "$T/upstream" "$UP" 1 & PIDS+=($!)
wait_http "http://127.0.0.1:$UP/"

# nginx, one worker, keep-alive to the upstream.
mkdir -p "$W/nginx"
cat >"$W/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $W/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $W/nginx/body;
  proxy_temp_path $W/nginx/proxy;
  fastcgi_temp_path $W/nginx/fastcgi;
  uwsgi_temp_path $W/nginx/uwsgi;
  scgi_temp_path $W/nginx/scgi;
  upstream bench { server 127.0.0.1:$UP; keepalive 128; }
  server {
    listen 127.0.0.1:$NGX backlog=4096;
    location / {
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
  # The identity provider's key set.
  server {
    listen 127.0.0.1:$IDP;
    location = /jwks.json { default_type application/json; alias $W/idp/jwks.json; }
  }
  # The OTLP collector of the tracing row: takes every export, keeps nothing.
  server {
    listen 127.0.0.1:$SINK;
    location /v1/traces { default_type application/x-protobuf; return 200 ""; }
  }
  server {
    listen 127.0.0.1:$NGXS ssl backlog=4096;
    ssl_certificate $W/tls.crt;
    ssl_certificate_key $W/tls.key;
    ssl_protocols TLSv1.3;
    location / {
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
$SRV "$NGINX" -c "$W/nginx.conf" -e "$W/nginx/error.log" & PIDS+=($!)
wait_http "http://127.0.0.1:$NGX/"

# HAProxy, one thread, verifying the provider's tokens itself (jwt_verify
# with the provider's public key, algorithm, issuer, audience and expiry
# ACLs) and sending the subject on: the peer of rows 16-17.
cat >"$W/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend jwt
  bind 127.0.0.1:$HAP
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request deny deny_status 401 unless { var(txn.alg) -m str ES256 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$W/idp/pub.pem") -m int 1 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('\$.iss') -m str $IDP_ISS }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('\$.aud') -m str gatehouse }
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.now) date()
  http-request set-var(txn.left) var(txn.exp),sub(txn.now)
  http-request deny deny_status 401 if { var(txn.left) -m int lt 0 }
  http-request set-header request-user-id %[var(txn.bearer),jwt_payload_query('\$.sub')]
  default_backend up
backend up
  server up 127.0.0.1:$UP
EOF
$SRV "$HAPROXY" -f "$W/haproxy.cfg" -db >"$W/haproxy.log" 2>&1 & PIDS+=($!)
PID_HAP=$!
wait_http "http://127.0.0.1:$IDP/jwks.json"
for _ in $(seq 1 50); do (: >"/dev/tcp/127.0.0.1/$HAP") 2>/dev/null && break; sleep 0.2; done

# The stack's floor: a minimal actix-web + awc forwarder (bench/src/bin/floor.rs).
$SRV "$T/floor" "$FLOOR" "http://127.0.0.1:$UP" 1 & PIDS+=($!)
PID_FLOOR=$!
wait_http "http://127.0.0.1:$FLOOR/"

# Gateway configurations: 10 routes, or the same plus 990 more.
routes() { # count
  echo "routes:"
  echo "  - {prefix: /public, upstream: bench, access: public}"
  echo "  - {prefix: /auth, upstream: bench, access: [admin]}"
  echo "  - {prefix: /web, upstream: bench, access: {roles: [admin], session: true}}"
  echo "  - {prefix: /limited, upstream: bench, access: [admin], rate_limit: {rate: 1000000/s, burst: 1000000}}"
  for i in $(seq 4 "$1"); do
    printf '  - {prefix: /r%04d/items, upstream: bench, access: authenticated}\n' "$i"
  done
}
gw_config() { # file routes [login rate limit]
  {
    echo "workers: 1"
    echo "login_limits: {rate: ${3:-~}}"
    echo "tokens: {access_ttl_secs: 7200}"
    echo "upstreams:"
    echo "  bench: [http://127.0.0.1:$UP]"
    echo "  users: [http://127.0.0.1:$USERS]"
    echo "  orders: [http://127.0.0.1:$UP]"
    echo "  scanner: [http://127.0.0.1:$UP]"
    routes "$2"
  } >"$1"
}
# The 10-route gateway keeps the shipped login limit (10/s per address);
# the others have none, so login latency can be measured back to back.
gw_config "$W/gw10.yaml" 10 "{rate: 10/s, burst: 20}"
gw_config "$W/gw10-open.yaml" 10
gw_config "$W/gw1000.yaml" 1000
# Rows 16-17: the provider's tokens on a route of their own.
gw_config "$W/gw-idp.yaml" 10
cat >>"$W/gw-idp.yaml" <<EOF
  - {prefix: /idp, upstream: bench, access: authenticated}
trusted_issuers:
  - {issuer: "$IDP_ISS", jwks_uri: "http://127.0.0.1:$IDP/jwks.json", audiences: [gatehouse],
     algorithms: [ES256]}
EOF
start_gw() { # port config [redis url] [binary] [scheme] (more environment in GW_ENV)
  local redis=()
  [ -n "${3:-}" ] && redis=("REDIS_URL=$3")
  env -u REDIS_URL GATEWAY_CONFIG_FILE="$2" GATEWAY_LISTEN="127.0.0.1:$1" DATA_DIR="$W/data" \
    GATEWAY__REDIS__KEY_PREFIX="bench:$$:$1:" RUST_LOG=warn "${redis[@]}" "${GW_ENV[@]}" \
    $SRV "${4:-$T/gateway}" >"$W/gw$1.log" 2>&1 & PIDS+=($!)
  eval "PID_$1=$!"
  wait_http "${5:-http}://127.0.0.1:$1/healthz"
}
GW_ENV=()
start_gw "$GW" "$W/gw10.yaml"
start_gw "$GWR" "$W/gw10-open.yaml" "$REDIS_URL"
start_gw "$GW1K" "$W/gw1000.yaml"
# Row 9 only: its peak RSS is of 1,000 connections alone, not of the rows
# before (a gateway's VmHWM is its lifetime peak).
start_gw "$GWC" "$W/gw10.yaml"
start_gw "$GWI" "$W/gw-idp.yaml"
[ -n "$BASELINE" ] && start_gw "$GWB" "$W/gw10-open.yaml" "" "$BASELINE/gateway"
GW_ENV=(GATEWAY_TLS=files GATEWAY_TLS_CERT_FILE="$W/tls.crt" GATEWAY_TLS_KEY_FILE="$W/tls.key")
start_gw "$GWS" "$W/gw10-open.yaml" "" "" https
GW_ENV=()
# Tracing off and on (1% of traces sampled and exported), nothing else apart.
start_gw "$GWOFF" "$W/gw10-open.yaml"
GW_ENV=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK" GATEWAY__TRACING__SAMPLING_RATIO=0.01)
start_gw "$GWTR" "$W/gw10-open.yaml"
GW_ENV=()
ADMIN_PASSWORD=bench-admin-password-0123 DATA_DIR="$W/data" USERS__LISTEN="127.0.0.1:$USERS" \
  USERS__WORKERS=1 RUST_LOG=warn $SRV "$T/users" >"$W/users.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$USERS/healthz"

LOGIN_BODY='{"username":"admin","password":"bench-admin-password-0123"}'
TOKEN="$(curl -fsS -X POST "http://127.0.0.1:$GW/api/login" -H 'content-type: application/json' -d "$LOGIN_BODY" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
AUTH="authorization: Bearer $TOKEN"
# A browser session from the login page (the anti-CSRF cookie and token of
# its form, then the session cookie it sets), for row 4s.
curl -fsS -c "$W/jar" -o "$W/login.html" "http://127.0.0.1:$GW/login"
CSRF="$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' "$W/login.html" | head -1)"
curl -fsS -b "$W/jar" -c "$W/jar" -o /dev/null -X POST "http://127.0.0.1:$GW/login" \
  --data-urlencode "csrf=$CSRF" --data-urlencode username=admin --data-urlencode password=bench-admin-password-0123
SESSION="cookie: gatehouse-session=$(awk '$6 == "gatehouse-session" { print $7 }' "$W/jar")"
code="$(curl -s -o /dev/null -w '%{http_code}' -H "$SESSION" "http://127.0.0.1:$GW/web/x")"
[ "$code" = 200 ] || { echo "the session route answered $code"; exit 1; }
for u in "http://127.0.0.1:$GW" "http://127.0.0.1:$GWR" "http://127.0.0.1:$GW1K" \
         ${BASELINE:+"http://127.0.0.1:$GWB"} "https://127.0.0.1:$GWS" \
         "http://127.0.0.1:$GWOFF" "http://127.0.0.1:$GWTR" "http://127.0.0.1:$GWC"; do
  code="$(curl -ks -o /dev/null -w '%{http_code}' -H "$AUTH" "$u/limited/x")"
  [ "$code" = 200 ] || { echo "gateway $u answered $code"; cat "$W/gw${u##*:}.log"; exit 1; }
done
# The provider's token passes both the gateway and HAProxy; a token with a
# broken signature passes neither.
# (its signature's first character changed: every bit of it counts, where
# the last character's lowest bits are padding a lenient decoder ignores).
SIG="${IDP_TOKEN##*.}"
BROKEN="${IDP_TOKEN%.*}.$([ "${SIG:0:1}" = A ] && echo B || echo A)${SIG:1}"
for u in "http://127.0.0.1:$GWI/idp/x" "http://127.0.0.1:$HAP/idp/x"; do
  code="$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $IDP_TOKEN" "$u" || true)"
  [ "$code" = 200 ] || { echo "$u answered $code to the provider's token"; cat "$W/haproxy.log" "$W/gw$GWI.log"; exit 1; }
  code="$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $BROKEN" "$u" || true)"
  [ "$code" = 401 ] || { echo "$u answered $code to a broken signature"; exit 1; }
done
# Both HTTPS servers speak TLS 1.3 with that certificate (wrk negotiates it
# with both); nginx, as configured, nothing older.
for u in "https://127.0.0.1:$GWS/public/x" "https://127.0.0.1:$NGXS/x"; do
  curl -ksS --tlsv1.3 -o /dev/null "$u"
done
if curl -ks --tls-max 1.2 -o /dev/null "https://127.0.0.1:$NGXS/x"; then
  echo "nginx accepted TLS 1.2" >&2; exit 1
fi
cat >"$W/login.lua" <<EOF
wrk.method = "POST"
wrk.body = '$LOGIN_BODY'
wrk.headers["Content-Type"] = "application/json"
EOF

# One wrk measurement -> "rps p50_ms p99_ms non2xx".
measure() { # conns url [wrk args...]
  local c=$1 url=$2; shift 2
  $LOAD wrk -t1 -c"$c" -d"${DURATION}s" --latency "$@" "$url" 2>&1 | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /[0-9]s$/) return v*1000; return v+0 }
    /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
    /Requests\/sec/ { rps = $2 } /Non-2xx/ { bad = $5 }
    END { printf "%.0f %.3f %.3f %d\n", rps, p50, p99, bad + 0 }'
}
rss_mib() { awk '/VmHWM/ { printf "%.1f", $2/1024 }' "/proc/$1/status"; }
nginx_worker() { pgrep -P "$(cat "$W/nginx.pid")" | head -1; }

declare -A R
record() { R[$1]="${R[$1]:-} $2"; }
SCENARIOS=(direct nginx floor gw_public gw_auth gw_session gw_limit_mem gw_limit_redis gw_1000 login code_flow storm_route
  nginx_tls gw_tls_auth nginx_handshake gw_handshake trace_off trace_on gw_idp_one hap_one gw_idp_many hap_many)
echo "warming up" >&2
measure "$CONNS" "http://127.0.0.1:$GW/auth/x" -H "$AUTH" >/dev/null
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  record direct "$(measure "$CONNS" "http://127.0.0.1:$UP/x")"
  record nginx "$(measure "$CONNS" "http://127.0.0.1:$NGX/x")"
  record floor "$(measure "$CONNS" "http://127.0.0.1:$FLOOR/x")"
  record gw_public "$(measure "$CONNS" "http://127.0.0.1:$GW/public/x")"
  record gw_auth "$(measure "$CONNS" "http://127.0.0.1:$GW/auth/x" -H "$AUTH")"
  record gw_session "$(measure "$CONNS" "http://127.0.0.1:$GW/web/x" -H "$SESSION")"
  record gw_limit_mem "$(measure "$CONNS" "http://127.0.0.1:$GW/limited/x" -H "$AUTH")"
  record gw_limit_redis "$(measure "$CONNS" "http://127.0.0.1:$GWR/limited/x" -H "$AUTH")"
  record gw_1000 "$(measure "$CONNS" "http://127.0.0.1:$GW1K/auth/x" -H "$AUTH")"
  # HTTPS: keep-alive connections, then a new TLS connection per request
  # (Connection: close), which measures full handshakes per second.
  record nginx_tls "$(measure "$CONNS" "https://127.0.0.1:$NGXS/x")"
  record gw_tls_auth "$(measure "$CONNS" "https://127.0.0.1:$GWS/auth/x" -H "$AUTH")"
  record nginx_handshake "$(measure "$CONNS" "https://127.0.0.1:$NGXS/x" -H "connection: close")"
  record gw_handshake "$(measure "$CONNS" "https://127.0.0.1:$GWS/public/x" -H "connection: close")"
  record trace_off "$(measure "$CONNS" "http://127.0.0.1:$GWOFF/auth/x" -H "$AUTH")"
  record trace_on "$(measure "$CONNS" "http://127.0.0.1:$GWTR/auth/x" -H "$AUTH")"
  # A provider's token: one reused, then this round's distinct ones (each
  # new to both: the first use of each is a signature check).
  record gw_idp_one "$(measure "$CONNS" "http://127.0.0.1:$GWI/idp/x" -H "authorization: Bearer $IDP_TOKEN")"
  record hap_one "$(measure "$CONNS" "http://127.0.0.1:$HAP/idp/x" -H "authorization: Bearer $IDP_TOKEN")"
  record gw_idp_many "$(measure "$CONNS" "http://127.0.0.1:$GWI/idp/x" -s "$W/tokens-$round.lua")"
  record hap_many "$(measure "$CONNS" "http://127.0.0.1:$HAP/idp/x" -s "$W/tokens-$round.lua")"
  if [ -n "$BASELINE" ]; then
    record base_public "$(measure "$CONNS" "http://127.0.0.1:$GWB/public/x")"
    record base_auth "$(measure "$CONNS" "http://127.0.0.1:$GWB/auth/x" -H "$AUTH")"
    # This build on the same configuration as the baseline (no login limit).
    record open_public "$(measure "$CONNS" "http://127.0.0.1:$GWR/public/x")"
    record open_auth "$(measure "$CONNS" "http://127.0.0.1:$GWR/auth/x" -H "$AUTH")"
  fi
  record login "$(measure 1 "http://127.0.0.1:$GW1K/api/login" -s "$W/login.lua")"
  # The code flow: authorize with a browser session, then the exchange
  # (what an application does at each sign-in), one after another.
  record code_flow "$($LOAD "$T/code_flow" "http://127.0.0.1:$GW1K" bench-admin-password-0123 "$((DURATION * 100))" 2>>"$W/code_flow.txt")"
  # A login storm on the same gateway while the proxied route is measured.
  $LOAD wrk -t1 -c8 -d"$((DURATION + 2))s" -s "$W/login.lua" "http://127.0.0.1:$GW/api/login" >"$W/storm.txt" 2>&1 &
  storm=$!
  sleep 1
  record storm_route "$(measure "$CONNS" "http://127.0.0.1:$GW/auth/x" -H "$AUTH")"
  wait "$storm" || true
  STORM="$(awk '/requests in/ { n = $1 } /Non-2xx/ { bad = $5 } END { printf "%d logins sent, %d refused with 429", n, bad }' "$W/storm.txt")"
done
# 1,000 connections at once (RSS), after everything else.
measure 50 "http://127.0.0.1:$GWC/auth/x" -H "$AUTH" >/dev/null
rss_c50="$(rss_mib "$PID_19014")"
c1000="$(measure 1000 "http://127.0.0.1:$GWC/auth/x" -H "$AUTH" --timeout 10s)"
# The floor at 1,000 connections too (after every other row, so its peak RSS
# above is of 50 connections): what the stack alone holds per connection.
rss_floor50="$(rss_mib "$PID_FLOOR")"
f1000="$(measure 1000 "http://127.0.0.1:$FLOOR/x" --timeout 10s)"
read -r ARGON ARGON_FRESH <<<"$($SRV "$T/argon2_verify" 21)"
# What rows 17 pay per new token: one ES256 check as the gateway makes it.
ES256="$($SRV "$T/es256_verify" "$W/idp/key.pem" "$W/idp/pub.pem" 2001)"
# What the tracing gateway sent (so row 15 is known to have exported).
TRACES="$(curl -fsS "http://127.0.0.1:$GWTR/metrics" | awk '
  /^gatehouse_trace_spans_exported_total/ { e = $2 } /^gatehouse_trace_spans_dropped_total/ { d = $2 }
  /^gatehouse_trace_spans_failed_total/ { f = $2 }
  END { printf "%d spans exported, %d dropped, %d failed", e, d, f }')"

# Medians over the rounds: field n of each scenario's samples.
med() { # scenario field
  echo "${R[$1]}" | awk -v f="$2" '{ n = NF / 4; for (i = 0; i < n; i++) v[i] = $(i * 4 + f); asort(v); print v[int((n + 1) / 2)] }'
}
rss_up="$(rss_mib "${PIDS[0]}")"
rss_ngx="$(rss_mib "$(nginx_worker)")"
rss_gw="$(rss_mib "$PID_19003")"
rss_gwr="$(rss_mib "$PID_19004")"
rss_gw1k="$(rss_mib "$PID_19005")"
rss_gws="$(rss_mib "$PID_19008")"
rss_off="$(rss_mib "$PID_19010")"
rss_tr="$(rss_mib "$PID_19011")"
FLOOR_RPS="$(med floor 1)"
ratio() { awk -v a="$1" -v b="$FLOOR_RPS" 'BEGIN { printf "%.2f", a / b }'; }
row() { # label scenario rss
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$(med "$2" 1)" "$(ratio "$(med "$2" 1)")" "$(med "$2" 2)" "$(med "$2" 3)" "$(med "$2" 4)" "$3"
}
CPU="$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
{
  echo "Machine: $(nproc) cores ($CPU), $(awk '/MemTotal/ { printf "%.0f GiB", $2/1048576 }' /proc/meminfo); $(uname -sr)."
  echo "Command: \`bash bench/run.sh\` (ROUNDS=$ROUNDS, DURATION=${DURATION}s, CONNS=$CONNS; wrk -t1, servers on one core, wrk on the other; medians of the rounds). $(date -u +%Y-%m-%d)."
  echo
  echo "| # | scenario | req/s | x floor | p50 ms | p99 ms | non-2xx | peak RSS MiB |"
  echo "|---|---|---|---|---|---|---|---|"
  row "1 | direct upstream" direct "$rss_up"
  row "2 | nginx proxy_pass (keep-alive)" nginx "$rss_ngx"
  row "2f | the floor: minimal actix-web + awc forwarder" floor "$rss_floor50"
  row "3 | gateway, public route" gw_public "$rss_gw"
  row "4 | gateway, JWT + role + identity + proof" gw_auth "$rss_gw"
  row "4s | 4 with the browser session cookie instead of the token" gw_session "$rss_gw"
  row "5a | 4 + rate limit in memory" gw_limit_mem "$rss_gw"
  row "5b | 4 + rate limit in Redis" gw_limit_redis "$rss_gwr"
  row "6 | POST /api/login (1 conn)" login "$rss_gw1k"
  row "6b | authorization code exchange, PKCE + ID token (1 conn, sequential)" code_flow "$rss_gw1k"
  row "7 | 4 during a login storm (8 conns)" storm_route "$rss_gw"
  row "8 | 4 with 1,000 routes" gw_1000 "$rss_gw1k"
  set -- $c1000
  printf '| 9 | 4 with 1,000 connections | %s | %s | %s | %s | %s | %s |\n' "$1" "$(ratio "$1")" "$2" "$3" "$4" "$(rss_mib "$PID_19014")"
  set -- $f1000
  printf '| 9f | the floor with 1,000 connections | %s | %s | %s | %s | %s | %s |\n' "$1" "$(ratio "$1")" "$2" "$3" "$4" "$(rss_mib "$PID_FLOOR")"
  row "10 | nginx HTTPS (TLS 1.3, keep-alive)" nginx_tls "$rss_ngx"
  row "11 | gateway HTTPS, route 4 (TLS 1.3, keep-alive)" gw_tls_auth "$rss_gws"
  row "12 | nginx HTTPS, a new TLS connection per request" nginx_handshake "$rss_ngx"
  row "13 | gateway HTTPS, public route, a new TLS connection per request" gw_handshake "$rss_gws"
  row "14 | 4, tracing off (the config of 15)" trace_off "$rss_off"
  row "15 | 4, tracing on: 1% sampled, OTLP/HTTP export" trace_on "$rss_tr"
  row "16 | a trusted provider's ES256 token, one reused" gw_idp_one "$(rss_mib "$PID_19017")"
  row "16h | HAProxy 2.6 jwt_verify + claim ACLs, the same token" hap_one "$(rss_mib "$PID_HAP")"
  row "17 | the provider's tokens, $IDP_TOKENS distinct cycling (one user)" gw_idp_many "$(rss_mib "$PID_19017")"
  row "17h | HAProxy, the same $IDP_TOKENS tokens" hap_many "$(rss_mib "$PID_HAP")"
  if [ -n "$BASELINE" ]; then
    row "3b | 3 on this build, the config of 3c" open_public "$rss_gwr"
    row "3c | 3 on the baseline build ($BASELINE)" base_public "$(rss_mib "$PID_19007")"
    row "4b | 4 on this build, the config of 4c" open_auth "$rss_gwr"
    row "4c | 4 on the baseline build ($BASELINE)" base_auth "$(rss_mib "$PID_19007")"
  fi
  echo
  echo "Raw argon2id verify (m=19 MiB, t=2, p=1), median of 21, on the servers' core: $ARGON ms with its memory reused (as the users service does), $ARGON_FRESH ms allocated afresh. Last storm (row 7): $STORM (login_limits.rate 10/s, burst 20, per address). Row 15: $TRACES. One ES256 check (jsonwebtoken, rust_crypto), median of 2,001 on the servers' core: $ES256 µs. Row 6b, the step before each exchange: $(tail -1 "$W/code_flow.txt")."
  echo
  awk -v a4="$(med gw_auth 1)" -v n="$(med nginx 1)" -v p4="$(med gw_auth 3)" -v pn="$(med nginx 3)" \
      -v lm="$(med gw_limit_mem 1)" -v lr="$(med gw_limit_redis 1)" -v lg="$(med login 2)" -v ar="$ARGON" \
      -v sp="$(med storm_route 3)" -v k="$(med gw_1000 1)" -v rss="$(rss_mib "$PID_19014")" -v rss50="$rss_c50" \
      -v f50="$rss_floor50" -v frss="$(rss_mib "$PID_FLOOR")" \
      -v ts="$(med gw_tls_auth 1)" -v tn="$(med nginx_tls 1)" -v hs="$(med gw_handshake 1)" -v hn="$(med nginx_handshake 1)" \
      -v toff="$(med trace_off 1)" -v ton="$(med trace_on 1)" \
      -v fl="$(med floor 1)" -v fp99="$(med floor 3)" -v a3="$(med gw_public 1)" -v p3="$(med gw_public 3)" \
      -v as="$(med gw_session 1)" -v io="$(med gw_idp_one 1)" -v ho="$(med hap_one 1)" \
      -v im="$(med gw_idp_many 1)" -v hm="$(med hap_many 1)" 'BEGIN {
    printf "| target | measured | goal |\n|---|---|---|\n"
    printf "| route 4 vs nginx, req/s | %.2fx | >= 1.0x |\n", a4 / n
    printf "| the floor vs nginx, req/s (2f / 2) | %.2fx | |\n", fl / n
    printf "| public route vs the floor, req/s (3 / 2f) | %.2fx | >= 0.95x |\n", a3 / fl
    printf "| route 4 vs the floor, req/s (4 / 2f) | %.2fx | >= 0.90x |\n", a4 / fl
    printf "| session cookie route vs route 4, req/s (4s / 4) | %.2fx | >= 0.90x |\n", as / a4
    printf "| public route p99 minus the floor p99 | %+.2f ms | <= +1 ms |\n", p3 - fp99
    printf "| route 4 p99 minus the floor p99 | %+.2f ms | <= +1 ms |\n", p4 - fp99
    printf "| route 4 p99 minus nginx p99 | %+.2f ms | <= +1 ms |\n", p4 - pn
    printf "| rate limiter overhead, memory | %.1f%% | <= 10%% |\n", (1 - lm / a4) * 100
    printf "| rate limiter overhead, Redis | %.1f%% | <= 10%% |\n", (1 - lr / a4) * 100
    printf "| login p50 / one argon2 verify | %.2fx | <= 1.2x |\n", lg / ar
    printf "| route 4 p99 during a login storm / idle | %.2fx | <= 2x |\n", sp / p4
    printf "| 1,000 routes vs 10 routes, req/s | %.2fx | >= 0.95x |\n", k / a4
    printf "| gateway peak RSS with 1,000 connections (a gateway of its own; %.1f MiB after 50) | %.1f MiB | <= 48 MiB |\n", rss50, rss
    printf "| peak RSS of the floor with 1,000 connections (%.1f MiB after 50) | %.1f MiB | |\n", f50, frss
    printf "| HTTPS route 4 vs nginx HTTPS, req/s (11 / 10) | %.2fx | as route 4 vs nginx |\n", ts / tn
    printf "| HTTPS route 4 vs plain route 4, req/s (11 / 4) | %.2fx | |\n", ts / a4
    printf "| new TLS connections per second vs nginx (13 / 12) | %.2fx | >= 1.0x |\n", hs / hn
    printf "| tracing overhead at 1%% sampling, req/s (1 - 15 / 14) | %.1f%% | <= 5%% |\n", (1 - ton / toff) * 100
    printf "| provider token vs HAProxy, one token (16 / 16h) | %.2fx | >= 2x |\n", io / ho
    printf "| provider tokens vs HAProxy, distinct tokens (17 / 17h) | %.2fx | >= 1.0x |\n", im / hm
  }'
  if [ -n "$BASELINE" ]; then
    echo
    awk -v op="$(med open_public 1)" -v bp="$(med base_public 1)" -v oa="$(med open_auth 1)" -v ba="$(med base_auth 1)" 'BEGIN {
      printf "| this build vs the baseline, same config, interleaved | ratio |\n|---|---|\n"
      printf "| public route (3b / 3c) | %.3fx |\n", op / bp
      printf "| route 4 (4b / 4c) | %.3fx |\n", oa / ba
    }'
  fi
} | tee "$W/table.md"

if [ "$UPDATE_README" = 1 ] && [ -f bench/README.md ]; then
  python3 - "$W/table.md" <<'PY'
import sys, re
table = open(sys.argv[1]).read().strip()
path = "bench/README.md"
text = open(path).read()
new = re.sub(r"<!-- results -->.*<!-- /results -->", "<!-- results -->\n" + table + "\n<!-- /results -->", text, flags=re.S)
open(path, "w").write(new)
PY
  echo "bench/README.md updated" >&2
fi
