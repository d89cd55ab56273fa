#!/usr/bin/env bash
# The docker-compose topology as processes on this machine (no Docker
# needed): two gateways, users, orders and two scanners on the local
# PostgreSQL and Redis, configured exactly as docker-compose.yml configures
# them (environment, key files, gateway config file, one migrate step).
#
#   deploy/topology.sh up      # build, migrate once, start, wait until ready
#   deploy/topology.sh status  # readiness of each process
#   deploy/topology.sh down    # stop them (add --drop to drop the databases)
#
# Settings: PG_URL (postgres://postgres@127.0.0.1:5432), REDIS_URL
# (redis://127.0.0.1:6379), BASE_PORT (18000: gateways on 18000/18001,
# services from 18081), PROFILE (release | debug), ADMIN_PASSWORD.
# State (pids, logs, keys, data) lives in .topology/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
BASE_PORT="${BASE_PORT:-18000}"
PROFILE="${PROFILE:-release}"
ADMIN_PASSWORD="${ADMIN_PASSWORD:-topology-admin-password}"
STATE="$PWD/.topology"
TARGET="${CARGO_TARGET_DIR:-$PWD/target}/$PROFILE"
DB_PREFIX=gh_topology

port() {
  case "$1" in
    gateway1) echo $((BASE_PORT)) ;; gateway2) echo $((BASE_PORT + 1)) ;;
    users) echo $((BASE_PORT + 81)) ;; orders) echo $((BASE_PORT + 82)) ;;
    scanner1) echo $((BASE_PORT + 83)) ;; scanner2) echo $((BASE_PORT + 84)) ;;
  esac
}
PROCS="users orders scanner1 scanner2 gateway1 gateway2"

start() { # name binary env...
  local name=$1 bin=$2; shift 2
  mkdir -p "$STATE/data/$name"
  env -i PATH="$PATH" RUST_LOG="${RUST_LOG:-info}" DATA_DIR="$STATE/data/$name" "$@" \
    "$TARGET/$bin" >"$STATE/logs/$name.log" 2>&1 &
  echo $! >"$STATE/pids/$name"
}

scheme() { case "$1" in gateway*) echo https ;; *) echo http ;; esac; }
# The gateways serve HTTPS with the certificate made below (trusted by name).
ready() { curl -fsS --cacert "$STATE/secrets/gateway-tls.crt" "$(scheme "$1")://127.0.0.1:$(port "$1")/readyz" >/dev/null 2>&1; }

up() {
  mkdir -p "$STATE"/{pids,logs,secrets}
  flag=--release; [ "$PROFILE" = release ] || flag=
  cargo build $flag -p gateway -p users -p orders -p scanner -p migrations
  # Keys, as deploy/make-secrets.sh makes them for compose.
  for k in gateway-proof access-token; do
    [ -f "$STATE/secrets/$k.key.pem" ] || openssl genpkey -algorithm ed25519 -out "$STATE/secrets/$k.key.pem"
    openssl pkey -in "$STATE/secrets/$k.key.pem" -pubout -out "$STATE/secrets/$k.pub.pem"
  done
  [ -f "$STATE/secrets/mfa.key" ] || (umask 077; openssl rand -base64 32 > "$STATE/secrets/mfa.key")
  # The gateway's certificate, as make-secrets.sh makes it (self-signed, for 127.0.0.1).
  [ -f "$STATE/secrets/gateway-tls.crt" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -nodes -days 90 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$STATE/secrets/gateway-tls.key" -out "$STATE/secrets/gateway-tls.crt" 2>/dev/null
  # The migrate step: a database per service, migrated once, before any service starts.
  for svc in gateway users orders scanner; do
    psql "$PG_URL/postgres" -qtAc "SELECT 1 FROM pg_database WHERE datname='${DB_PREFIX}_$svc'" | grep -q 1 \
      || psql "$PG_URL/postgres" -qc "CREATE DATABASE ${DB_PREFIX}_$svc"
    "$TARGET/migrations" --service "$svc" --database-url "$PG_URL/${DB_PREFIX}_$svc" up
  done
  local pub="[\"$STATE/secrets/gateway-proof.pub.pem\"]"
  start users users USERS__LISTEN=127.0.0.1:"$(port users)" DATABASE_URL="$PG_URL/${DB_PREFIX}_users" \
    USERS__DATABASE__AUTO_MIGRATE=false USERS__GATEWAY_PROOF__PUBLIC_KEY_FILES="$pub" \
    USERS__MFA__KEY_FILE="$STATE/secrets/mfa.key" ADMIN_PASSWORD="$ADMIN_PASSWORD"
  start orders orders ORDERS__LISTEN=127.0.0.1:"$(port orders)" DATABASE_URL="$PG_URL/${DB_PREFIX}_orders" \
    ORDERS__DATABASE__AUTO_MIGRATE=false ORDERS__GATEWAY_PROOF__PUBLIC_KEY_FILES="$pub"
  for s in scanner1 scanner2; do
    start "$s" scanner SCANNER__INSTANCE="$s" SCANNER__LISTEN=127.0.0.1:"$(port "$s")" \
      DATABASE_URL="$PG_URL/${DB_PREFIX}_scanner" SCANNER__DATABASE__AUTO_MIGRATE=false \
      SCANNER__GATEWAY_PROOF__PUBLIC_KEY_FILES="$pub"
  done
  cat >"$STATE/gateway.yaml" <<YAML
upstreams:
  users: [http://127.0.0.1:$(port users)]
  orders: [http://127.0.0.1:$(port orders)]
  scanner:
    targets:
      - {name: scanner1, url: "http://127.0.0.1:$(port scanner1)"}
      - {name: scanner2, url: "http://127.0.0.1:$(port scanner2)"}
    balance: least_connections
# Production: the admin role is exercised only with a second factor.
mfa:
  required_for_roles: [admin]
# Registrations (POST /admin/upstreams/{name}/targets) name only the
# upstreams' own hosts and these; never the users service, which
# receives passwords. A stolen admin token cannot aim a share of the
# traffic anywhere else.
registry:
  allowed_targets: []
tokens:
  issuer: https://127.0.0.1:$(port gateway1)
YAML
  for g in gateway1 gateway2; do
    start "$g" gateway GATEWAY_CONFIG_FILE="$STATE/gateway.yaml" GATEWAY_LISTEN=127.0.0.1:"$(port "$g")" \
      GATEWAY_TLS=files GATEWAY_TLS_CERT_FILE="$STATE/secrets/gateway-tls.crt" \
      GATEWAY_TLS_KEY_FILE="$STATE/secrets/gateway-tls.key" GATEWAY_PUBLIC_URL="https://127.0.0.1:$(port gateway1)" \
      DATABASE_URL="$PG_URL/${DB_PREFIX}_gateway" GATEWAY__DATABASE__AUTO_MIGRATE=false \
      REDIS_URL="$REDIS_URL" GATEWAY__PROOF__PRIVATE_KEY_FILE="$STATE/secrets/gateway-proof.key.pem" \
      GATEWAY__TOKENS__KEYS="[{alg=\"EdDSA\", private_key_file=\"$STATE/secrets/access-token.key.pem\", active=true}]" \
      GATEWAY_METRICS_TOKEN="${GATEWAY_METRICS_TOKEN:-topology-metrics-token}" GATEWAY__METRICS__REQUIRE_TOKEN=true
  done
  for p in $PROCS; do
    for _ in $(seq 1 100); do ready "$p" && break; sleep 0.2; done
    ready "$p" || { echo "$p is not ready; see $STATE/logs/$p.log" >&2; exit 1; }
  done
  status
  echo "gateways: https://127.0.0.1:$(port gateway1) and https://127.0.0.1:$(port gateway2) (admin / \$ADMIN_PASSWORD;" \
    "curl --cacert $STATE/secrets/gateway-tls.crt)"
}

status() {
  for p in $PROCS; do
    if ready "$p"; then s=ready; else s=down; fi
    printf '%-9s %-6s :%s pid %s\n' "$p" "$s" "$(port "$p")" "$(cat "$STATE/pids/$p" 2>/dev/null || echo -)"
  done
}

down() {
  for p in $PROCS; do
    [ -f "$STATE/pids/$p" ] && kill "$(cat "$STATE/pids/$p")" 2>/dev/null || true
    rm -f "$STATE/pids/$p"
  done
  if [ "${1:-}" = --drop ]; then
    sleep 1
    for svc in gateway users orders scanner; do psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS ${DB_PREFIX}_$svc"; done
  fi
}

case "${1:-}" in
  up) up ;;
  status) status ;;
  down) shift; down "$@" ;;
  *) echo "usage: $0 up|status|down [--drop]" >&2; exit 2 ;;
esac
