#!/usr/bin/env bash
# Concurrent writers on a PostgreSQL store (issue 21).
#
# What it measures: the wall time of a full `dossier sync` of SQLite sources into a fresh
# PostgreSQL store, in three cases, each into its own new database:
#   (a) 1 source alone:                 `dossier sync a`
#   (b) 2 disjoint sources at once:     `dossier sync a` and `dossier sync b`, started at the
#                                       same moment, reading two different files (no shared
#                                       email)
#   (c) 2 overlapping sources at once:  `dossier sync a` and `dossier sync a2`, started at the
#                                       same moment, both reading the same file (every email
#                                       shared)
# Each source has PEOPLE people with an email and 2 orders each (totals `id % 100` and 1.5),
# mapped to contacts and `order` sessions with a `total_spent` sum, as in tests/workers.rs.
# Every case is checked with psql: live contacts, distinct emails among them, sessions, the sum
# of `total_spent` over live contacts and each run's status, against what the sources imply;
# a wrong store prints WRONG. The store's migrations run before the clock starts.
#
# How to run it (from the repository's root, PostgreSQL with trust auth at the URL below):
#   cargo build --release --bin dossier
#   benches/concurrent_sources.sh [DOSSIER_BIN] [PEOPLE]
#     DOSSIER_BIN  default target/release/dossier
#     PEOPLE       default 50000 (people per source file; rows per source = 3 x PEOPLE)
# Environment: DOSSIER_BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres, a
# server where it may create databases), DOSSIER_BENCH_BATCH (batch_size, default 2000;
# bulk_commit_rows is 3 batches, as in tests/workers.rs). Needs psql and sqlite3 (or python3).
# It creates dossier_cs_<pid>_{a,b,c} and drops them at the end, also on failure.
# To compare two builds, run it alternately with each binary (before, after, before, after).
set -uo pipefail

BIN=${1:-target/release/dossier}
PEOPLE=${2:-50000}
PG_ADMIN=${DOSSIER_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BATCH=${DOSSIER_BENCH_BATCH:-2000}

[[ -x $BIN ]] || { echo "no dossier binary at $BIN" >&2; exit 2; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
export PGOPTIONS="-c client_min_messages=warning"
command -v psql >/dev/null || { echo "psql is required" >&2; exit 2; }

WORK=$(mktemp -d /tmp/dossier-cs.XXXXXX)
DBS=()
cleanup() {
    for db in "${DBS[@]}"; do
        psql "$PG_ADMIN" -qtA -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

admin() { psql "$PG_ADMIN" -v ON_ERROR_STOP=1 -qtA -c "$1"; }
db_url() { echo "${PG_ADMIN%/*}/$1"; }
q() { psql "$(db_url "$1")" -v ON_ERROR_STOP=1 -qtA -c "$2"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# A SQLite source: PEOPLE people p<i>@<domain>.example.com, each with two orders.
source_file() {
    local file=$1 domain=$2
    local sql="
CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL, total REAL NOT NULL, at TEXT NOT NULL);
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $PEOPLE)
  INSERT INTO people SELECT i, 'p' || i || '@$domain.example.com' FROM s;
INSERT INTO orders SELECT id * 2, id, id % 100, '2024-01-01 00:00:00' FROM people;
INSERT INTO orders SELECT id * 2 + 1, id, 1.5, '2024-01-02 00:00:00' FROM people;"
    if command -v sqlite3 >/dev/null; then
        sqlite3 "$file" "$sql"
    else
        python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()' "$file" "$sql"
    fi
}

source_toml() {
    local name=$1 file=$2
    cat <<EOF

[[sources]]
name = "$name"
connector = "sqlite"
config = { path = "$file" }
schedule = "1h"
batch_size = $BATCH
bulk_commit_rows = $((BATCH * 3))

[[sources.streams]]
name = "people"
read = { table = "people", cursor = "id" }

[sources.streams.mapping]
target = "contact"
id = "id"
identities = { email = "email" }

[[sources.streams]]
name = "orders"
read = { table = "orders", cursor = "id" }

[sources.streams.mapping]
target = "session"
id = "id"
kind = "order"
started_at = "at | datetime"
contact = { stream = "people", field = "person_id" }
data = { total = "total" }
EOF
}

# config <file> <database> <name=path>...
config() {
    local file=$1 db=$2
    shift 2
    {
        printf '[store]\nurl = "%s"\n\n' "$(db_url "$db")"
        printf '[[aggregates]]\nname = "total_spent"\nop = "sum"\nkind = "order"\nfield = "total"\n'
        for s in "$@"; do source_toml "${s%%=*}" "${s#*=}"; done
    } >"$file"
}

# run_case <label> <case> <expected contacts> <expected sessions> <expected total> <name=path>...
run_case() {
    local label=$1 case=$2 want_contacts=$3 want_sessions=$4 want_total=$5
    shift 5
    local db="dossier_cs_$$_$case" cfg="$WORK/$case.toml"
    DBS+=("$db")
    admin "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" && admin "CREATE DATABASE \"$db\"" || exit 1
    config "$cfg" "$db" "$@"
    # Migrations first (any command that opens the store runs them), off the clock.
    "$BIN" sources --config "$cfg" >"$WORK/$case-migrate.log" 2>&1 || {
        echo "migrating $db failed:" >&2; cat "$WORK/$case-migrate.log" >&2; exit 1; }
    local load; load=$(cut -d' ' -f1 /proc/loadavg)
    local names=() s
    for s in "$@"; do names+=("${s%%=*}"); done
    local t0; t0=$(now)
    for s in "${names[@]}"; do
        ( "$BIN" sync "$s" --config "$cfg" >"$WORK/$case-$s.log" 2>&1
          echo $? >"$WORK/$case-$s.rc"; now >"$WORK/$case-$s.end" ) &
    done
    wait
    local t1; t1=$(now)
    local each=() ok=1 s rc
    for s in "${names[@]}"; do
        rc=$(cat "$WORK/$case-$s.rc")
        each+=("$s $(secs "$t0" "$(cat "$WORK/$case-$s.end")")s rc=$rc")
        if [[ $rc != 0 ]]; then
            ok=0
            echo "  sync $s exited $rc; its last lines:" >&2
            tail -n 5 "$WORK/$case-$s.log" | sed 's/^/    /' >&2
        fi
    done
    local contacts emails sessions total runs
    contacts=$(q "$db" "SELECT count(*) FROM contacts WHERE merged_into IS NULL")
    emails=$(q "$db" "SELECT count(DISTINCT email) FROM contacts WHERE merged_into IS NULL")
    sessions=$(q "$db" "SELECT count(*) FROM sessions WHERE deleted = 0")
    total=$(q "$db" "SELECT coalesce(round(sum(a.num)::numeric, 1), 0) FROM contact_aggregates a
        JOIN contacts c ON c.id = a.contact_id WHERE c.merged_into IS NULL AND a.name = 'total_spent'")
    runs=$(q "$db" "SELECT string_agg(source || ':' || status, ',' ORDER BY source) FROM sync_runs")
    [[ $contacts == "$want_contacts" && $emails == "$want_contacts" && $sessions == "$want_sessions" \
        && $total == "$want_total" ]] || ok=0
    printf '%-34s %7ss  [%s]  contacts %s (distinct emails %s; want %s)  sessions %s (want %s)  total_spent %s (want %s)  runs %s  load %s  %s\n' \
        "$label" "$(secs "$t0" "$t1")" "$(IFS=';'; echo "${each[*]}")" "$contacts" "$emails" \
        "$want_contacts" "$sessions" "$want_sessions" "$total" "$want_total" "$runs" "$load" \
        "$([[ $ok == 1 ]] && echo ok || echo WRONG)"
    admin "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
}

source_file "$WORK/a.db" a
source_file "$WORK/b.db" b
# What total_spent sums to over the contacts of one file: every order's total.
one=$(awk -v n="$PEOPLE" 'BEGIN { s = 0; for (i = 1; i <= n; i++) s += i % 100 + 1.5; printf "%.1f", s }')
two=$(awk -v x="$one" 'BEGIN { printf "%.1f", 2 * x }')

echo "# $BIN ($("$BIN" --version 2>/dev/null | head -n1)), $PEOPLE people per source ($((3 * PEOPLE)) rows), batch $BATCH, $(date -u +%FT%TZ), $(nproc) cores"
run_case "(a) 1 source" a "$PEOPLE" $((2 * PEOPLE)) "$one" "a=$WORK/a.db"
run_case "(b) 2 disjoint sources at once" b $((2 * PEOPLE)) $((4 * PEOPLE)) "$two" \
    "a=$WORK/a.db" "b=$WORK/b.db"
run_case "(c) 2 overlapping sources at once" c "$PEOPLE" $((4 * PEOPLE)) "$two" \
    "a=$WORK/a.db" "a2=$WORK/a.db"
