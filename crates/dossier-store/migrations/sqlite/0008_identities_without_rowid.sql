-- Every record a sync reads looks up its identities. As a WITHOUT ROWID table the lookup is
-- one search of the primary key's B-tree, which also holds the contact id; a rowid table
-- needs its key index, then the row (about a third more time per lookup, measured on the
-- pg_sync bench's 200,000 identities). PostgreSQL's heap has no such choice; its table stays.
CREATE TABLE identities_new (
    workspace TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,
    contact_id BIGINT NOT NULL, created_at BIGINT NOT NULL, merges BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace, kind, value)) WITHOUT ROWID;
INSERT INTO identities_new SELECT workspace, kind, value, contact_id, created_at, merges
    FROM identities;
DROP TABLE identities;
ALTER TABLE identities_new RENAME TO identities;
CREATE INDEX identities_contact ON identities (contact_id);
