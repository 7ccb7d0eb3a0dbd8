#!/usr/bin/env bash
# Runs the whole suite twice: on PostgreSQL + Redis, then on the embedded default (SQLite, no Redis).
# Uses DATABASE_URL / REDIS_URL when given; otherwise starts throwaway servers in a temp dir and removes them.
# Only what truly cannot run is skipped, and it says so loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTEST=".venv/bin/pytest"
WORK=$(mktemp -d /tmp/partnerdesk-testenv.XXXXXX)
chmod 755 "$WORK"
PG_DIR=""
REDIS_PID=""

PASS2_PID=""
cleanup() {
  [ -n "$PASS2_PID" ] && kill "$PASS2_PID" 2>/dev/null || true
  if [ -n "$PG_DIR" ] && [ -f "$PG_DIR/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR" -m immediate stop >/dev/null 2>&1 || true
  fi
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

as_pg() {
  if [ "$(id -u)" = "0" ]; then su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; else "$@"; fi
}

loud() { printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n!!! %s\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' "$1" >&2; }

if [ -z "${DATABASE_URL:-}" ]; then
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -z "$PG_BIN" ] && command -v initdb >/dev/null && PG_BIN=$(dirname "$(command -v initdb)")
  if [ -n "$PG_BIN" ]; then
    PG_DIR="$WORK/pg"
    mkdir -p "$PG_DIR"
    [ "$(id -u)" = "0" ] && chown postgres "$PG_DIR"
    PG_PORT=$(free_port)
    as_pg "$PG_BIN/initdb" -D "$PG_DIR" -A trust -U postgres >/dev/null
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR" -w -l "$PG_DIR/server.log" \
      -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
      start >/dev/null
    export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    echo "started throwaway PostgreSQL on port $PG_PORT"
  else
    loud "PostgreSQL not found: Postgres-only tests (money, concurrency) will be SKIPPED"
  fi
fi

if [ -z "${REDIS_URL:-}" ]; then
  if command -v redis-server >/dev/null; then
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    echo "started throwaway Redis on port $REDIS_PORT"
  else
    loud "redis-server not found (apt-get install -y redis-server): Redis tests will be SKIPPED"
  fi
fi

status=0
status2=0
DB_LABEL=SQLite; [ -n "${DATABASE_URL:-}" ] && DB_LABEL=PostgreSQL
# The two passes run side by side (CI has 2 cores; each pass is mostly one Python process): pass 1 prints as it
# goes, pass 2's output is kept and printed after it. PYTEST_SEQUENTIAL=1 runs them one after the other.
PASS2_LOG="$WORK/pass2.log"
run_pass2() { env -u DATABASE_URL -u REDIS_URL "$PYTEST" -m "not postgres and not redis" "$@"; }
if [ "${PYTEST_SEQUENTIAL:-0}" = "1" ]; then
  echo "== pass 1/2: $DB_LABEL${REDIS_URL:+ + Redis}"
  "$PYTEST" "$@" || status=$?
  echo "== pass 2/2: embedded default (SQLite, in-process jobs, no Redis)"
  run_pass2 "$@" || status2=$?
else
  run_pass2 "$@" >"$PASS2_LOG" 2>&1 &
  PASS2_PID=$!
  echo "== pass 1/2: $DB_LABEL${REDIS_URL:+ + Redis} (pass 2, the embedded default, runs alongside: its output follows)"
  "$PYTEST" "$@" || status=$?
  wait "$PASS2_PID" || status2=$?
  echo "== pass 2/2: embedded default (SQLite, in-process jobs, no Redis)"
  cat "$PASS2_LOG"
fi
# pytest exits 5 when nothing is collected: a run that tests nothing is a failure here too
[ "$status" = "5" ] && { loud "pass 1 collected no tests"; status=1; }
[ "$status2" = "5" ] && { loud "pass 2 collected no tests"; status2=1; }
[ "$status" = "0" ] && [ "$status2" = "0" ] && exit 0
echo "pass 1 exit $status, pass 2 exit $status2" >&2
exit 1
