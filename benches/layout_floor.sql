-- The floor of the embedded store's layout (pg_sync bench, step 2): the `sqlite3` shell alone,
-- no Dossier code, writes what a full sync of the bench's shop leaves in the store, in the
-- cheapest way SQLite allows. It starts from the limit's three bare tables (limit.db, already
-- local: no PostgreSQL, no mapping, no identity resolution) and a store file holding the
-- store's migrations, and
--
--   * inserts each table's rows in its primary key's order, so every B-tree grows at its end;
--   * drops the secondary indexes first and builds each after the load with one sort;
--   * computes the five aggregates and the contacts' session data set-based, one GROUP BY
--     per source table.
--
-- It writes the rows of the sync (contacts, both identities of each and the claim on its email, every order and
-- conversation with its data as the store encodes it, the aggregates and the session data on
-- each contact) but leaves out what only a sync needs: provenance, stream states, run records
-- and the bookkeeping of a resumable load. It also writes a few rows fewer, which only makes
-- it faster: `avg_csat` only for contacts with a rated conversation (the store keeps an empty
-- one for every contact with a session) and `csat` only where the latest conversation is
-- rated (the store keeps the latest rating). The bench checks that the indexes it rebuilds are
-- exactly those the migrations create. Run from the directory holding limit.db.
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA cache_size = -32000;
ATTACH 'limit.db' AS s;

DROP INDEX contacts_ws_id;
DROP INDEX contacts_ws_email;
DROP INDEX contacts_ws_country;
DROP INDEX identities_contact;
DROP INDEX sessions_contact;
DROP INDEX sessions_stream;
DROP INDEX identity_claims_identity;
DROP INDEX contact_aggregates_name_num;

BEGIN;
INSERT INTO contacts (id, workspace, email, first_name, last_name, country, created_at,
                      updated_at, source_updated_at)
  SELECT id, 'default', email, first_name, last_name, country,
         unixepoch(substr(created_at, 1, 19)) * 1000000, 1,
         unixepoch(substr(updated_at, 1, 19)) * 1000000
  FROM s.customers ORDER BY id;
INSERT INTO identities (workspace, kind, value, contact_id, created_at, claimed)
  SELECT 'default', 'email', email, id, 1, 1 FROM s.customers ORDER BY email;
INSERT INTO identities (workspace, kind, value, contact_id, created_at, claimed)
  SELECT 'default', 'external', 'shop:customers:' || id, id, 1, 1
  FROM s.customers ORDER BY 'shop:customers:' || id;
-- Each customer record asserts its email (the identity stops resolving once none does).
INSERT INTO identity_claims (workspace, claimant, kind, value)
  SELECT 'default', 'shop:customers:' || id, 'email', email
  FROM s.customers ORDER BY 'shop:customers:' || id;
INSERT INTO contact_data (contact_id, key, value, txt, own, updated_at)
  SELECT id, 'price_plan', json_object('s', plan), plan, 1, 1 FROM s.customers ORDER BY id;
INSERT INTO sessions (workspace, source, stream, external_id, kind, contact_id, started_at, data,
                      created_at, updated_at)
  SELECT 'default', 'shop', 'orders', CAST(id AS TEXT), 'order', customer_id,
         unixepoch(substr(created_at, 1, 19)) * 1000000,
         json_object('currency', json_object('s', currency),
                     'ordered_at', json_object('t', replace(substr(created_at, 1, 19), ' ', 'T') || 'Z'),
                     'status', json_object('s', status), 'total', json_object('n', total)),
         1, 1
  FROM s.orders ORDER BY CAST(id AS TEXT);
INSERT INTO sessions (workspace, source, stream, external_id, kind, contact_id, started_at, data,
                      created_at, updated_at)
  SELECT 'default', 'shop', 'conversations', CAST(id AS TEXT), 'conversation', customer_id,
         unixepoch(substr(started_at, 1, 19)) * 1000000,
         json_object('channel', json_object('s', channel), 'csat', json_object('n', csat)), 1, 1
  FROM s.conversations ORDER BY CAST(id AS TEXT);
COMMIT;

CREATE INDEX contacts_ws_id ON contacts (workspace, id);
CREATE INDEX contacts_ws_email ON contacts (workspace, email);
CREATE INDEX contacts_ws_country ON contacts (workspace, country, merged_into);
CREATE INDEX identities_contact ON identities (contact_id);
CREATE INDEX sessions_contact ON sessions (contact_id, started_at, id);
CREATE INDEX sessions_stream ON sessions (workspace, source, stream, seen_run);
CREATE INDEX identity_claims_identity ON identity_claims (workspace, kind, value);

BEGIN;
-- One row per contact with its latest order (SQLite takes the bare columns from the row that
-- holds the max) and the order aggregates; the same for conversations. The CSV import left a
-- NULL csat as ''.
CREATE TEMP TABLE o AS
  SELECT customer_id AS c, count(*) AS n, sum(total) AS s, max(created_at) AS m,
         total, currency, status, replace(substr(created_at, 1, 19), ' ', 'T') || 'Z' AS at
  FROM s.orders GROUP BY customer_id;
CREATE TEMP TABLE v AS
  SELECT customer_id AS c, count(NULLIF(csat, '')) AS n, avg(NULLIF(csat, '')) AS a,
         max(started_at) AS m, NULLIF(csat, '') AS csat, channel
  FROM s.conversations GROUP BY customer_id;
INSERT INTO contact_aggregates (contact_id, name, state, value, num)
  SELECT c, 'transactions', json_object('count', n), json_object('n', n), n FROM o
  UNION ALL SELECT c, 'total_spent', json_object('count', n, 'sum', s), json_object('n', s), s FROM o
  UNION ALL SELECT c, 'avg_basket', json_object('count', n, 'sum', s), json_object('n', s / n), s / n
            FROM o
  UNION ALL SELECT c, 'last_order_at', json_object('count', n, 'best', at), json_object('t', at),
                   unixepoch(substr(m, 1, 19)) FROM o
  UNION ALL SELECT c, 'avg_csat', json_object('count', n, 'sum', a * n), json_object('n', a), a
            FROM v WHERE n > 0
  ORDER BY 1, 2;
INSERT INTO contact_data (contact_id, key, value, num, txt, own, updated_at)
  SELECT c, 'total', json_object('n', total), total, NULL, 0, 1 FROM o
  UNION ALL SELECT c, 'currency', json_object('s', currency), NULL, currency, 0, 1 FROM o
  UNION ALL SELECT c, 'status', json_object('s', status), NULL, status, 0, 1 FROM o
  UNION ALL SELECT c, 'ordered_at', json_object('t', at), unixepoch(substr(m, 1, 19)), NULL, 0, 1
            FROM o
  UNION ALL SELECT c, 'csat', json_object('n', csat), csat, NULL, 0, 1 FROM v WHERE csat IS NOT NULL
  UNION ALL SELECT c, 'channel', json_object('s', channel), NULL, channel, 0, 1 FROM v
  ORDER BY 1, 2;
COMMIT;
CREATE INDEX contact_aggregates_name_num ON contact_aggregates (name, num);
PRAGMA wal_checkpoint(TRUNCATE);
