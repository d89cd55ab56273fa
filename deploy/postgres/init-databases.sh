#!/bin/sh
# Runs once, on the first start of the postgres container: one database and
# one owner role per service (no service can read another's tables).
set -eu
for svc in gateway users orders scanner; do
  pw_var="$(echo "${svc}" | tr a-z A-Z)_DB_PASSWORD"
  pw="$(eval echo "\${${pw_var}}")"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE ROLE ${svc} LOGIN PASSWORD '${pw}';
CREATE DATABASE ${svc} OWNER ${svc};
REVOKE ALL ON DATABASE ${svc} FROM PUBLIC;
SQL
done
