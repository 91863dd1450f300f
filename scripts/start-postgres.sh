#!/usr/bin/env bash
# Start the local PostgreSQL 15 cluster for taskgrove's tests and benchmark (idempotent).
#
#   sudo scripts/start-postgres.sh      # prints the URL base to stdout
#
# - installs PostgreSQL with apt-get only when pg_ctlcluster is missing;
# - starts cluster 15/main (listens on 127.0.0.1:5432 by default) unless it is running;
# - waits until pg_isready answers (bounded);
# - creates the login role `taskgrove` (password `taskgrove`, CREATEDB) when missing, and
#   makes sure an existing one can log in with that password and create databases.
# Everything but the URL goes to stderr, so `url=$(scripts/start-postgres.sh)` works.
set -euo pipefail

PG_VERSION="${PG_VERSION:-15}"
PG_CLUSTER="${PG_CLUSTER:-main}"
PG_HOST=127.0.0.1
PG_PORT="${PG_PORT:-5432}"
ROLE=taskgrove
PASSWORD=taskgrove
READY_TIMEOUT_S="${READY_TIMEOUT_S:-60}"

say() { echo "start-postgres: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  say "must run as root (pg_ctlcluster and apt-get need it)"
  exit 1
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  say "pg_ctlcluster not found: installing postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi

# The version installed may differ from 15 on another machine: use the only one present.
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$PG_VERSION $PG_CLUSTER"; then
  found=$(pg_lsclusters -h | awk 'NR==1 {print $1" "$2}')
  if [ -z "$found" ]; then
    say "no PostgreSQL cluster found; creating $PG_VERSION/$PG_CLUSTER"
    pg_createcluster "$PG_VERSION" "$PG_CLUSTER" >&2
  else
    say "cluster $PG_VERSION/$PG_CLUSTER not found; using $found"
    read -r PG_VERSION PG_CLUSTER <<<"$found"
  fi
fi

status=$(pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1==v && $2==c {print $4}')
if [ "$status" != "online" ]; then
  say "starting cluster $PG_VERSION/$PG_CLUSTER"
  pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start >&2
fi

deadline=$((SECONDS + READY_TIMEOUT_S))
until pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    say "PostgreSQL on $PG_HOST:$PG_PORT not ready after ${READY_TIMEOUT_S}s"
    exit 1
  fi
  sleep 0.5
done

as_postgres() {
  # runuser needs no password and no tty; cd / so postgres can read its working directory.
  (cd / && runuser -u postgres -- psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -qAt "$@")
}

exists=$(as_postgres -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")
if [ "$exists" != "1" ]; then
  say "creating role $ROLE"
  as_postgres -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
else
  ok=$(as_postgres -c "SELECT rolcanlogin AND rolcreatedb FROM pg_roles WHERE rolname = '$ROLE'")
  if [ "$ok" != "t" ]; then
    say "granting LOGIN CREATEDB to role $ROLE"
    as_postgres -c "ALTER ROLE $ROLE LOGIN CREATEDB"
  fi
  # The password may have been set differently: check it over TCP, reset it if needed.
  if ! PGPASSWORD="$PASSWORD" psql -h "$PG_HOST" -p "$PG_PORT" -U "$ROLE" -d postgres \
      -qAtc "SELECT 1" >/dev/null 2>&1; then
    say "resetting the password of role $ROLE"
    as_postgres -c "ALTER ROLE $ROLE PASSWORD '$PASSWORD'"
  fi
fi

say "PostgreSQL $PG_VERSION/$PG_CLUSTER ready on $PG_HOST:$PG_PORT"
echo "postgresql+asyncpg://$ROLE:$PASSWORD@$PG_HOST:$PG_PORT"
