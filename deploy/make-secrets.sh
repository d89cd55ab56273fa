#!/usr/bin/env bash
# Creates the keys docker-compose mounts as secrets (./secrets, git-ignored):
# the gateway's proof key pair (Ed25519), the access-token signing key, the
# users service's key sealing TOTP secrets, and the gateway's TLS certificate.
# Existing files are kept: rerunning never rotates a key by accident.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p secrets
umask 077
gen() {
  [ -f "secrets/$1.key.pem" ] || openssl genpkey -algorithm ed25519 -out "secrets/$1.key.pem"
  openssl pkey -in "secrets/$1.key.pem" -pubout -out "secrets/$1.pub.pem"
}
gen gateway-proof
gen access-token
# 32 random bytes (base64) sealing the TOTP secrets of second factors: losing
# it makes every enrolled second factor unusable, so back it up with the
# database.
[ -f secrets/mfa.key ] || openssl rand -base64 32 > secrets/mfa.key
# The gateway's TLS certificate: a self-signed one for GATEWAY_HOSTNAME
# (localhost by default) until you put your own chain and key here (a public
# CA's, or cert-manager's); the gateway reloads them when they change.
host="${GATEWAY_HOSTNAME:-localhost}"
if [ ! -f secrets/gateway-tls.crt ] || [ ! -f secrets/gateway-tls.key ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 90 \
    -subj "/CN=$host" -addext "subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1" \
    -keyout secrets/gateway-tls.key -out secrets/gateway-tls.crt 2>/dev/null
fi
ls -l secrets
