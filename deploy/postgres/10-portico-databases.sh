#!/bin/bash
# Runs once, when the postgres container initialises an empty data directory
# (/docker-entrypoint-initdb.d). Creates each service's role and database
# from the very connection URL that service is given as a secret, so the two
# can never disagree: users and data each own one database, may connect only
# to that one, and are not superusers.
set -euo pipefail

# create_from_url <file>: postgresql://ROLE:PASSWORD@HOST[:PORT]/DATABASE[?...]
create_from_url() {
  local file="$1" url role password db
  url="$(< "$file")"
  if [[ ! "$url" =~ ^postgres(ql)?://([^:@/]+):([^@/]+)@[^/]+/([^?/]+)(\?.*)?$ ]]; then
    echo "portico init: $file is not postgresql://ROLE:PASSWORD@HOST/DATABASE" >&2
    return 1
  fi
  role="${BASH_REMATCH[2]}"
  password="${BASH_REMATCH[3]}"
  db="${BASH_REMATCH[4]}"
  password="$(printf '%b' "${password//%/\\x}")"  # URIs percent-encode reserved characters
  echo "portico init: role and database $db for $role"
  psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --no-password --no-psqlrc \
       --dbname postgres --set role="$role" --set password="$password" --set db="$db" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"role";
SQL
}

create_from_url /run/secrets/users_database_url
create_from_url /run/secrets/data_database_url
