#!/usr/bin/env bash
# The one test command: makes sure the servers the tests use are installed and running
# (idempotently), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

PG_URL="${DOSSIER_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export DOSSIER_TEST_PG_URL="$PG_URL"

ensure_postgres() {
  if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
    return
  fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL"
    apt_install postgresql
  fi
  local ver
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  # Tests connect as postgres over TCP without a password: trust loopback only.
  local hba="/etc/postgresql/$ver/main/pg_hba.conf"
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  log "starting PostgreSQL $ver"
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || as_root pg_ctlcluster "$ver" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && return; sleep 1; done
  echo "PostgreSQL did not start on 127.0.0.1:5432" >&2
  exit 1
}

MYSQL_DEFAULT_URL="mysql://root@127.0.0.1:3306/test"
MYSQL_URL="${DOSSIER_TEST_MYSQL_URL:-$MYSQL_DEFAULT_URL}"
export DOSSIER_TEST_MYSQL_URL="$MYSQL_URL"

mariadb_up() { command -v mariadb-admin >/dev/null && mariadb-admin ping -h 127.0.0.1 --silent >/dev/null 2>&1; }

# The MySQL connector's tests connect as root over TCP without a password, create and drop
# databases and users: allow that on loopback only, and make sure the `test` database exists.
ensure_mariadb_root() {
  if mariadb -h 127.0.0.1 -u root -e 'CREATE DATABASE IF NOT EXISTS test' >/dev/null 2>&1; then
    return
  fi
  log "letting root reach MariaDB on 127.0.0.1 without a password (test server)"
  as_root mariadb -u root -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
    GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
    CREATE DATABASE IF NOT EXISTS test; FLUSH PRIVILEGES;"
}

ensure_mariadb() {
  if ! mariadb_up; then
    if [ ! -x /usr/sbin/mariadbd ]; then
      log "installing MariaDB"
      apt_install mariadb-server mariadb-client
    fi
    log "starting MariaDB"
    if ! as_root service mariadb start >/dev/null 2>&1; then
      as_root install -d -o mysql -g mysql /run/mysqld
      as_root start-stop-daemon --start --oknodo --background \
        --exec /usr/sbin/mariadbd -- --user=mysql
    fi
    for _ in $(seq 1 30); do mariadb_up && break; sleep 1; done
    if ! mariadb_up; then
      echo "MariaDB did not start on 127.0.0.1:3306" >&2
      exit 1
    fi
  fi
  ensure_mariadb_root
}

# MongoDB: NX-27017, a MongoDB wire-protocol server in Python over SQLite (no MongoDB server
# package is available here), from PyPI in a venv under .cache/ (git-ignored), started by the
# launcher scripts/nx27017.py. Set DOSSIER_TEST_MONGODB_URI to use another server (tests that
# kill a server start their own NX-27017 with DOSSIER_TEST_NX_PYTHON).
NX_DIR="$PWD/.cache/nx-27017"
NX_PORT=27217
NX_VERSIONS="nx-27017==0.8.1 neosqlite==1.17.2 pymongo==4.20.1"
MONGODB_DEFAULT_URI="mongodb://127.0.0.1:$NX_PORT/?directConnection=true"
MONGODB_TEST_URI="${DOSSIER_TEST_MONGODB_URI:-$MONGODB_DEFAULT_URI}"
export DOSSIER_TEST_MONGODB_URI="$MONGODB_TEST_URI"
export DOSSIER_TEST_NX_PYTHON="$NX_DIR/venv/bin/python"

nx_up() {
  "$NX_DIR/venv/bin/python" -c 'import sys, pymongo
pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=1000).admin.command("ping")' \
    "$MONGODB_DEFAULT_URI" >/dev/null 2>&1
}

ensure_nx27017() {
  local marker="$NX_DIR/venv/.installed"
  if [ "$(cat "$marker" 2>/dev/null)" != "$NX_VERSIONS" ]; then
    log "installing NX-27017 ($NX_VERSIONS) in $NX_DIR/venv"
    if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
      apt_install python3 python3-venv
    fi
    mkdir -p "$NX_DIR"
    python3 -m venv "$NX_DIR/venv"
    # shellcheck disable=SC2086
    "$NX_DIR/venv/bin/pip" install -q --disable-pip-version-check $NX_VERSIONS
    echo "$NX_VERSIONS" >"$marker"
  fi
  if nx_up; then
    return
  fi
  log "starting NX-27017 on 127.0.0.1:$NX_PORT"
  mkdir -p "$NX_DIR/data"
  setsid "$NX_DIR/venv/bin/python" scripts/nx27017.py --host 127.0.0.1 --port "$NX_PORT" \
    --data-dir "$NX_DIR/data" --pid-file "$NX_DIR/server.pid" --log-file "$NX_DIR/server.log" \
    >>"$NX_DIR/server.out" 2>&1 </dev/null &
  for _ in $(seq 1 30); do nx_up && return; sleep 1; done
  echo "NX-27017 did not start on 127.0.0.1:$NX_PORT (see $NX_DIR/server.out)" >&2
  exit 1
}

# Airbyte's faker source and a Singer tap (meltanolabs-tap-postgres, reading Pagila): their
# wheels and their dependencies' (Python 3 of this machine), fetched once into .cache/; the
# tests install them through `dossier connectors install` from there, offline (PIP_NO_INDEX,
# PIP_FIND_LINKS). Keep the versions in step with tests/airbyte_faker.rs and
# tests/singer_postgres.rs. Each is resolved on its own: their pins need not agree.
PYTHON_CONNECTORS="airbyte-source-faker==7.2.1 meltanolabs-tap-postgres==0.10.0"
AIRBYTE_WHEELS="$PWD/.cache/airbyte-wheels"
export DOSSIER_TEST_AIRBYTE_WHEELS="$AIRBYTE_WHEELS"

ensure_airbyte_wheels() {
  local marker="$AIRBYTE_WHEELS/.downloaded" spec
  if [ "$(cat "$marker" 2>/dev/null)" = "$PYTHON_CONNECTORS $(python3 -V)" ]; then
    return
  fi
  mkdir -p "$AIRBYTE_WHEELS"
  for spec in $PYTHON_CONNECTORS; do
    log "downloading $spec and its dependencies to $AIRBYTE_WHEELS"
    python3 -m pip download -q --disable-pip-version-check -d "$AIRBYTE_WHEELS" "$spec"
  done
  echo "$PYTHON_CONNECTORS $(python3 -V)" >"$marker"
}

# The console's browser test drives Debian's Chromium through ChromeDriver.
ensure_chromium() {
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    return
  fi
  log "installing Chromium and ChromeDriver (the console's browser test)"
  apt_install --no-install-recommends chromium chromium-driver
}

# The connector tests load the Pagila and Sakila fixtures with the servers' own clients.
if ! command -v psql >/dev/null || ! command -v pg_isready >/dev/null; then
  log "installing the PostgreSQL client"
  apt_install postgresql-client
fi
if ! command -v mariadb >/dev/null; then
  log "installing the MariaDB client"
  apt_install mariadb-client
fi

ensure_postgres
log "PostgreSQL ready at ${PG_URL%%@*}@…"
# A server given through DOSSIER_TEST_MYSQL_URL is the caller's to run.
if [ "$MYSQL_URL" = "$MYSQL_DEFAULT_URL" ]; then
  ensure_mariadb
fi
log "MySQL/MariaDB ready at ${MYSQL_URL%%@*}@…"
# The NX-27017 venv also holds the Python the kill test starts its own server with.
ensure_nx27017
log "MongoDB (NX-27017) ready at ${MONGODB_TEST_URI%%\?*}"
ensure_airbyte_wheels
ensure_chromium

if ! command -v cargo >/dev/null; then
  echo "cargo is not installed: install Rust (https://rustup.rs) and rerun" >&2
  exit 1
fi

# No module may import one that imports it back (ARCHITECTURE.md); cheap, so first.
log "checking that no module imports one that imports it back"
python3 scripts/module_cycles.py

log "building and running every test"
log_file=$(mktemp)
trap 'rm -f "$log_file"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log_file" || status=$?
# One closing line for the whole workspace (cargo prints one per test binary).
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log_file" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log_file" | awk '{s+=$1} END {print s+0}')
echo
echo "tests: $passed passed, $failed failed"
exit "$status"
