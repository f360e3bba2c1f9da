#!/usr/bin/env bash
# docker-compose.yml, tested for real: builds the images from
# deploy/docker/Dockerfile, brings up PostgreSQL, users, data, the gateway and
# Prometheus with docker-compose (v1) against podman, waits for every
# healthcheck, walks the REST API through the published gateway port, checks
# that Prometheus scrapes every Portico target and that every metric the alert
# rules and the Grafana dashboard query exists. Always tears everything down.
#
#   tests/compose/compose_test.sh [WORK_DIR]    (ctest passes one in the build tree)
#
# No container registry is needed: the base images the Dockerfile and the
# compose file name are made locally (Debian's debootstrap, and stand-ins for
# postgres and prometheus built from Debian packages; see standins/). The
# debootstrap tarball is cached in PORTICO_IMAGE_CACHE (default
# /var/cache/portico-images) and the images stay in podman's storage, so later
# runs rebuild only what changed. Grafana has no Debian package and is not
# started here; its dashboard's queries are checked against Prometheus.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="$(mkdir -p "${1:-$ROOT/build/compose-test}" && cd "${1:-$ROOT/build/compose-test}" && pwd)"
CACHE="${PORTICO_IMAGE_CACHE:-/var/cache/portico-images}"
# One project (and image tag) per work directory: two checkouts can run this at
# once, and a run that was killed is cleaned up by the next one.
PROJECT="porticotest$(printf '%s' "$WORK" | md5sum | cut -c1-8)"
START=$SECONDS

log() { printf '[compose %3ds] %s\n' "$((SECONDS - START))" "$*"; }
fail() { log "FAIL: $*"; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  echo "compose_test: skipped: needs root (rootful podman builds and runs the images)"
  exit 77
fi

log "packages"
"$ROOT/scripts/bootstrap" --containers >"$WORK/bootstrap.log" 2>&1 \
  || { cat "$WORK/bootstrap.log"; fail "scripts/bootstrap --containers"; }

# crun fails on this cgroup layout; higher ulimits than these are refused.
cat >"$WORK/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"

[network]
network_backend = "netavark"
CONF
export CONTAINERS_CONF="$WORK/containers.conf"
# The OCI image format has no HEALTHCHECK: podman would drop it.
export BUILDAH_FORMAT=docker

SERVICE_PID=""
HEALTH_PID=""
SOCK="$WORK/podman.sock"
export DOCKER_HOST="unix://$SOCK"
export PORTICO_SECRETS_DIR="$WORK/secrets"
export PORTICO_IMAGE_TAG="$PROJECT"

compose() {
  docker-compose -p "$PROJECT" -f "$ROOT/docker-compose.yml" --project-directory "$ROOT" \
    --profile observability "$@"
}

# remove_project: whatever this project left behind, by podman's own labels.
remove_project() {
  local ids
  ids="$(podman ps -aq --filter "label=com.docker.compose.project=$PROJECT")"
  if [ -n "$ids" ]; then podman rm -f -t 5 $ids >/dev/null 2>&1 || true; fi
  podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
  for v in pgdata prometheus grafana; do podman volume rm -f "${PROJECT}_$v" >/dev/null 2>&1 || true; done
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ -n "$HEALTH_PID" ]; then kill "$HEALTH_PID" 2>/dev/null; wait "$HEALTH_PID" 2>/dev/null; fi
  if [ -n "$SERVICE_PID" ]; then
    if [ "$rc" -ne 0 ]; then
      log "state at failure:"
      compose ps
      compose logs --no-color --tail=40
    fi
    log "down"
    compose down -v --remove-orphans -t 10 >"$WORK/down.log" 2>&1 || cat "$WORK/down.log"
  fi
  remove_project
  for svc in gateway users data; do podman rmi "docker.io/portico/$svc:$PROJECT" >/dev/null 2>&1; done
  if [ -n "$SERVICE_PID" ]; then kill "$SERVICE_PID" 2>/dev/null; wait "$SERVICE_PID" 2>/dev/null; fi
  rm -rf "$PORTICO_SECRETS_DIR" "$SOCK"
  if [ -n "$(podman ps -q --filter "label=com.docker.compose.project=$PROJECT")" ]; then
    log "FAIL: containers still running after teardown"
    rc=1
  fi
  log "done (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

remove_project

# --- base images -------------------------------------------------------------
# debian_uri <suite-pattern>: the archive this machine's apt uses for a suite.
debian_uri() {
  local uri
  uri="$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
           /etc/apt/sources.list.d/*.sources | grep -E "$1" | head -1 \
         | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{print $1}')"
  echo "${uri:-$2}"
}

if ! podman image exists docker.io/library/debian:bookworm \
   || ! podman image exists docker.io/library/debian:bookworm-slim; then
  tarball="$CACHE/bookworm-minbase.tar"
  if [ ! -s "$tarball" ]; then
    mirror="$(debian_uri '/debian/?$|/debian[[:space:]]' http://deb.debian.org/debian)"
    security="$(debian_uri 'debian-security' http://deb.debian.org/debian-security)"
    log "debootstrap bookworm from $mirror (once; cached in $CACHE)"
    mkdir -p "$CACHE"
    rm -rf "$CACHE/rootfs.tmp"
    debootstrap --variant=minbase bookworm "$CACHE/rootfs.tmp" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap.log"; fail "debootstrap"; }
    # The sources the official debian:bookworm image has.
    cat >"$CACHE/rootfs.tmp/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
    rm -rf "$CACHE/rootfs.tmp/var/cache/apt/archives/"*.deb "$CACHE/rootfs.tmp/var/lib/apt/lists/"*
    tar -C "$CACHE/rootfs.tmp" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$CACHE/rootfs.tmp"
  fi
  log "import the base image"
  podman import --quiet --change 'CMD ["bash"]' "$tarball" docker.io/library/debian:bookworm >/dev/null
  podman tag docker.io/library/debian:bookworm docker.io/library/debian:bookworm-slim
fi

# build <log-name> <podman build args...>: quiet unless it fails.
build() {
  local name="$1"; shift
  local t0=$SECONDS
  if ! podman build --pull=never --layers "$@" >"$WORK/build-$name.log" 2>&1; then
    tail -40 "$WORK/build-$name.log"
    fail "image build $name (log: $WORK/build-$name.log)"
  fi
  log "built $name in $((SECONDS - t0))s"
}

log "stand-ins for postgres:15-bookworm and prom/prometheus:v2.42.0"
build postgres -t docker.io/library/postgres:15-bookworm "$HERE/standins/postgres"
build prometheus -t docker.io/prom/prometheus:v2.42.0 "$HERE/standins/prometheus"

log "promtool: the Prometheus configuration, alert rules and their unit tests"
promtool() {
  podman run --rm --network none -v "$ROOT/deploy/prometheus:/etc/prometheus:ro" -w /etc/prometheus \
    --entrypoint /bin/promtool docker.io/prom/prometheus:v2.42.0 "$@"
}
{ promtool check config prometheus.yml && promtool test rules alerts_test.yml; } >"$WORK/promtool.log" 2>&1 \
  || { cat "$WORK/promtool.log"; fail "promtool"; }

log "Portico images (the first target compiles; the others reuse its stage)"
for svc in gateway users data; do
  build "$svc" -f "$ROOT/deploy/docker/Dockerfile" --target "$svc" \
    -t "docker.io/portico/$svc:$PROJECT" "$ROOT"
done
for svc in gateway users data; do
  user="$(podman image inspect --format '{{.Config.User}}' "docker.io/portico/$svc:$PROJECT")"
  [ "${user%%:*}" = 10001 ] || fail "image $svc runs as '$user', not the non-root 10001"
done
log "image sizes: $(podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
  | grep ":$PROJECT" | sed 's|docker.io/portico/||; s|:'"$PROJECT"'||' | tr '\n' ' ')"

# --- the stack -----------------------------------------------------------------
free_port() {
  local port
  while :; do
    port=$(shuf -i 20000-60000 -n 1)
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
}
GW_PORT="$(free_port)"
PROM_PORT="$(free_port)"
export PORTICO_PUBLISH="127.0.0.1:$GW_PORT"
export PORTICO_PROMETHEUS_PUBLISH="127.0.0.1:$PROM_PORT"
export PORTICO_GRAFANA_PUBLISH="127.0.0.1:$(free_port)"

rm -rf "$PORTICO_SECRETS_DIR"
"$ROOT/scripts/compose-secrets" >/dev/null

podman system service --time=0 "$DOCKER_HOST" >"$WORK/podman-service.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 100); do
  curl -fsS --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1 && break
  kill -0 "$SERVICE_PID" 2>/dev/null || { cat "$WORK/podman-service.log"; fail "podman system service"; }
  sleep 0.1
done

# podman runs HEALTHCHECKs only from systemd timers, which containers here
# do not get: run them every 2 s, as a Docker engine would, so that
# `depends_on: condition: service_healthy` and the health states mean something.
(
  while :; do
    for id in $(podman ps -q --filter "label=com.docker.compose.project=$PROJECT"); do
      podman healthcheck run "$id" >/dev/null 2>&1 || true
    done
    sleep 2
  done
) &
HEALTH_PID=$!

log "compose up (gateway on 127.0.0.1:$GW_PORT, Prometheus on 127.0.0.1:$PROM_PORT)"
t0=$SECONDS
timeout 300 docker-compose -p "$PROJECT" -f "$ROOT/docker-compose.yml" --project-directory "$ROOT" \
  --profile observability up -d --no-build postgres users data gateway prometheus \
  >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; fail "compose up"; }

# Every Portico container must become healthy through its own HEALTHCHECK.
deadline=$((SECONDS + 120))
for svc in postgres users data gateway; do
  while :; do
    id="$(compose ps -q "$svc")"
    state="$(podman inspect --format '{{.State.Health.Status}}' "$id" 2>/dev/null || echo missing)"
    [ "$state" = healthy ] && break
    [ $SECONDS -lt $deadline ] || fail "$svc is $state, not healthy"
    sleep 1
  done
done
log "all healthy $((SECONDS - t0))s after compose up"

# Only the gateway's public port (and Prometheus, loopback) is published.
published="$(podman ps --filter "label=com.docker.compose.project=$PROJECT" --format '{{.Ports}}' \
  | tr ',' '\n' | grep -c -- '->' || true)"
[ "$published" = 2 ] || fail "expected 2 published ports (gateway, prometheus), got: $(podman ps --format '{{.Names}} {{.Ports}}')"

# --- the REST API through the published port -------------------------------------
BASE="http://127.0.0.1:$GW_PORT"
TOKEN=""
# call <status> <method> <path> [json body]: the response body lands in $WORK/resp.
call() {
  local want="$1" method="$2" path="$3" got
  local args=(-sS -o "$WORK/resp" -w '%{http_code}' -X "$method" -H 'Content-Type: application/json')
  [ -n "$TOKEN" ] && args+=(-H "Authorization: Bearer $TOKEN")
  [ $# -ge 4 ] && args+=(--data "$4")
  got="$(curl "${args[@]}" "$BASE$path")" || fail "$method $path: curl failed"
  [ "$got" = "$want" ] || fail "$method $path: status $got, want $want: $(cat "$WORK/resp")"
}
# expect <jq filter>: true on the last response body.
expect() { jq -e "$1" "$WORK/resp" >/dev/null || fail "response does not satisfy $1: $(cat "$WORK/resp")"; }

log "smoke through the gateway"
email="compose-$RANDOM@example.com"
call 201 POST /v1/auth/register \
  "{\"email\":\"$email\",\"password\":\"correct horse battery\",\"displayName\":\"Compose\"}"
expect ".email == \"$email\" and .role == \"USER\" and (has(\"passwordHash\") | not)"
call 401 POST /v1/auth/login "{\"email\":\"$email\",\"password\":\"wrong horse battery\"}"
expect '.status == 401'
call 200 POST /v1/auth/login "{\"email\":\"$email\",\"password\":\"correct horse battery\"}"
TOKEN="$(jq -r .accessToken "$WORK/resp")"
[ -n "$TOKEN" ] && [ "$TOKEN" != null ] || fail "no access token"
call 200 GET /v1/users/me
expect ".email == \"$email\""
call 201 POST /v1/collections/notes/items '{"data":{"title":"first"}}'
expect '.data.title == "first" and .version == "1"'
item="$(jq -r .id "$WORK/resp")"
call 200 GET "/v1/collections/notes/items/$item"
expect ".id == \"$item\" and .data.title == \"first\""
call 200 PUT "/v1/collections/notes/items/$item" '{"data":{"title":"second"}}'
expect '.data.title == "second" and .version == "2"'
call 200 GET /v1/collections/notes/items
expect "(.items | length) == 1 and .items[0].id == \"$item\" and .items[0].data.title == \"second\""
call 204 DELETE "/v1/collections/notes/items/$item"
call 404 GET "/v1/collections/notes/items/$item"
expect '.status == 404'
TOKEN=""
call 401 GET /v1/users/me
log "smoke passed"

# --- Prometheus ---------------------------------------------------------------------
PROM="http://127.0.0.1:$PROM_PORT"
prom() { curl -fsS "$PROM$1" 2>/dev/null; }

log "Prometheus: every Portico target up"
deadline=$((SECONDS + 90))
while :; do
  up="$(prom '/api/v1/query?query=up' | jq -r '.data.result[] | "\(.metric.job)=\(.value[1])"' 2>/dev/null | sort | tr '\n' ' ' || true)"
  [ "$up" = "portico-data=1 portico-gateway=1 portico-users=1 " ] && break
  [ $SECONDS -lt $deadline ] || fail "targets not all up: '$up' ($(prom /api/v1/targets | jq -c '[.data.activeTargets[] | {job: .labels.job, health, lastError}]'))"
  sleep 2
done

log "Prometheus: alert rules loaded and evaluating"
deadline=$((SECONDS + 90))
while :; do
  prom /api/v1/rules >"$WORK/rules.json" || true
  rules="$(jq '[.data.groups[].rules[]] | length' "$WORK/rules.json" 2>/dev/null || echo 0)"
  bad="$(jq -r '[.data.groups[].rules[] | select(.health != "ok") | "\(.name)=\(.health) \(.lastError // "")"] | join(", ")' "$WORK/rules.json" 2>/dev/null || echo unknown)"
  [ "$rules" -gt 0 ] && [ -z "$bad" ] && break
  [ $SECONDS -lt $deadline ] || fail "rules: $rules loaded; not ok: $bad"
  sleep 2
done
log "$rules alert rules, all evaluating"

# Every metric a rule or a dashboard panel queries must exist after the smoke
# traffic above (a misspelt name would silently never fire or draw).
jq -r '.data.groups[].rules[].query' "$WORK/rules.json" >"$WORK/queries.txt"
jq -r '.. | objects | select(has("expr")) | .expr' "$ROOT"/deploy/grafana/dashboards/*.json >>"$WORK/queries.txt"
# ...and the dashboard must query the datasource Grafana is provisioned with.
uids="$(jq -r '[.. | objects | select(has("datasource")) | .datasource.uid] | unique | join(" ")' \
  "$ROOT"/deploy/grafana/dashboards/*.json)"
grep -q "uid: $uids\$" "$ROOT/deploy/grafana/provisioning/datasources/prometheus.yml" \
  || fail "the dashboard uses datasource uid(s) '$uids', not the provisioned one"
grep -oE '\b(portico|process)_[a-zA-Z0-9_]+' "$WORK/queries.txt" | sort -u >"$WORK/wanted.txt"
[ -s "$WORK/wanted.txt" ] || fail "no metric names found in the rules and the dashboard"
log "Prometheus: $(wc -l <"$WORK/wanted.txt") metric names used by rules and dashboard"
deadline=$((SECONDS + 90))
while :; do
  prom '/api/v1/label/__name__/values' | jq -r '.data[]' 2>/dev/null | sort -u >"$WORK/have.txt" || true
  missing="$(comm -23 "$WORK/wanted.txt" "$WORK/have.txt" | tr '\n' ' ')"
  [ -z "$missing" ] && break
  [ $SECONDS -lt $deadline ] || fail "metrics queried but never scraped: $missing"
  sleep 2
done
log "every queried metric exists: $(tr '\n' ' ' <"$WORK/wanted.txt")"
log "PASS in $((SECONDS - START))s"
