#!/usr/bin/env bash
# The floor of the store's layout: what SQLite alone (the sqlite3 shell, no Dossier code) takes
# to write the orders of the pg_sync bench into the store's `sessions` table and its indexes,
# each order noting its contact in `derived_pending` as a bulk load does. Same row shape as the
# bench (500,000 orders of 100,000 customers, external ids and contacts in random order), same
# page cache and WAL settings as the store, in three ways:
#
#   batches  a transaction per 2,000 rows (the default batch_size)
#   groups   a transaction per 50,000 rows (a bulk load's default bulk_commit_rows)
#   late     a transaction per 2,000 rows without the two secondary session indexes, which
#            are built after the load
#
# Usage: benches/sqlite_floor.sh [orders]      (from the repository root; needs sqlite3)
set -euo pipefail
cd "$(dirname "$0")/.."
orders=${1:-500000}
customers=$((orders / 5))
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# One order's data as the store keeps it (the bench's mapping).
data='{"currency":{"s":"EUR"},"ordered_at":{"t":"2024-01-01T00:51:00Z"},"status":{"s":"paid"},"total":{"n":376.92}}'

load() { # variant, rows per transaction
  local variant=$1 per_tx=$2 db="$dir/$1.db"
  for m in crates/dossier-store/migrations/sqlite/*.sql; do sqlite3 "$db" < "$m"; done
  if [ "$variant" = late ]; then
    sqlite3 "$db" "DROP INDEX sessions_contact; DROP INDEX sessions_stream;"
  fi
  {
    echo "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -32000;"
    echo "PRAGMA wal_autocheckpoint = 16384;"
    echo "ATTACH '$dir/src.db' AS s;"
    local lo=0
    while [ "$lo" -lt "$orders" ]; do
      local hi=$((lo + per_tx))
      echo "BEGIN;"
      echo "INSERT INTO sessions (workspace, source, stream, external_id, kind, contact_id, started_at, data, created_at, updated_at)"
      echo "  SELECT 'default', 'shop', 'orders', ext, 'order', contact, 1704070260000000 + n, '$data', 1, 1"
      echo "  FROM s.src WHERE n > $lo AND n <= $hi;"
      echo "INSERT INTO derived_pending (workspace, contact_id) SELECT 'default', contact FROM s.src"
      echo "  WHERE n > $lo AND n <= $hi ON CONFLICT DO NOTHING;"
      echo "COMMIT;"
      lo=$hi
    done
    if [ "$variant" = late ]; then
      echo "CREATE INDEX sessions_contact ON sessions (contact_id, started_at, id);"
      echo "CREATE INDEX sessions_stream ON sessions (workspace, source, stream, seen_run);"
    fi
  } > "$dir/$variant.sql"
  local start end
  start=$(date +%s.%N)
  sqlite3 "$db" < "$dir/$variant.sql" > /dev/null
  end=$(date +%s.%N)
  awk -v v="$variant" -v n="$orders" -v s="$start" -v e="$end" \
    'BEGIN { printf "%-8s %d orders in %.2f s = %.0f rows/s\n", v, n, e - s, n / (e - s) }'
}

# The orders in the order a sync reads them, with scattered external ids and contacts.
sqlite3 "$dir/src.db" "CREATE TABLE src (n INTEGER PRIMARY KEY, ext TEXT, contact INTEGER);
  INSERT INTO src WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $orders)
  SELECT n, CAST((n * 2654435761) % $orders + 1 AS TEXT), (n * 40503) % $customers + 1 FROM g;"

echo "sqlite3 alone, the store's session table and indexes, $orders orders:"
load batches 2000
load groups 50000
load late 2000
