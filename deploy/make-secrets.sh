#!/usr/bin/env bash
# Creates the keys docker-compose mounts as secrets (./secrets, git-ignored):
# the gateway's proof key pair (Ed25519) and the access-token signing key.
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
ls -l secrets
