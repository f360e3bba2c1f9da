# Shared by scripts/run and scripts/test. Source it; do not run it.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"

# build <preset> [targets...]: configure once, then build.
build() {
  local preset="$1"; shift
  if [ ! -f "$ROOT/build/$preset/build.ninja" ]; then
    cmake --preset "$preset" -S "$ROOT" >/dev/null
  fi
  cmake --build "$ROOT/build/$preset" -j "$(nproc)" "$@"
}

# free_port: a TCP port nothing listens on right now.
free_port() {
  local port
  while :; do
    port=$(shuf -i 20000-60000 -n 1)
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

# as_pg <cmd...>: run a PostgreSQL server command; as root, as the postgres user.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# pg_local_start <dir>: start (initialising on first use) a PostgreSQL cluster
# in <dir> on a free port; sets PG_PORT and PG_SOCK. Data survives restarts.
pg_local_start() {
  local dir="$1"
  PG_SOCK="$dir/sock"
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    install -d -o postgres -m 700 "$dir/data" "$PG_SOCK"
  else
    install -d -m 700 "$dir/data" "$PG_SOCK"
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 >/dev/null
  fi
  if as_pg "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    PG_PORT="$(cat "$dir/port")"
    return 0
  fi
  # A free port can be taken between the check and the bind: try a few.
  local attempt
  for attempt in 1 2 3 4 5; do
    PG_PORT="$(free_port)"
    echo "$PG_PORT" > "$dir/port"
    if as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$PG_SOCK/postgresql.log" -w -t 30 \
         -o "-k $PG_SOCK -p $PG_PORT -c listen_addresses=127.0.0.1" start >/dev/null; then
      return 0
    fi
  done
  echo "PostgreSQL did not start; its log: $PG_SOCK/postgresql.log" >&2
  return 1
}

pg_local_stop() {
  local dir="$1"
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# pg_ensure_db <port> <name>: create a database if it does not exist.
pg_ensure_db() {
  local port="$1" name="$2"
  if ! psql -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'" postgres | grep -q 1; then
    psql -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE $name" postgres
  fi
}

# pg_local_use <dir>: the local cluster of scripts/run, for scripts that work
# on its databases: sets PG_PORT; starts it if it is not running and then
# sets STARTED_PG=<dir> (the caller stops it with pg_local_stop).
pg_local_use() {
  local dir="$1"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    echo "no local PostgreSQL in $dir (scripts/run makes one); or give database URLs" >&2
    return 1
  fi
  if ! as_pg "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    pg_local_start "$dir"
    STARTED_PG="$dir"
  fi
  PG_PORT="$(cat "$dir/port")"
}

# utc_now: the time as RFC 3339 UTC with milliseconds.
utc_now() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }

# url_location <libpq URI>: the URI without credentials or parameters, for
# messages and manifests.
url_location() {
  local url="${1%%\?*}"
  sed -E 's#^(postgres(ql)?://)[^@/]*@#\1#' <<<"$url"
}
