-- Segment counts probe a contact's data and aggregate rows by (contact, key) once per
-- candidate contact: as WITHOUT ROWID tables that probe is one B-tree search that also holds
-- the value (a rowid table needs its key index, then the row). The aggregate table also gains
-- windowed rules' expiry: the earliest moment a counted session may leave the window, so a
-- sweep refolds exactly the contacts whose value can have changed with time.
CREATE TABLE contact_data_new (
    contact_id BIGINT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    num DOUBLE PRECISION, txt TEXT, own SMALLINT NOT NULL,
    session_id BIGINT, session_at BIGINT, updated_at BIGINT NOT NULL,
    PRIMARY KEY (contact_id, key)) WITHOUT ROWID;
INSERT INTO contact_data_new SELECT contact_id, key, value, num, txt, own, session_id, session_at, updated_at
    FROM contact_data;
DROP TABLE contact_data;
ALTER TABLE contact_data_new RENAME TO contact_data;
CREATE INDEX contact_data_key_num ON contact_data (key, num);
CREATE INDEX contact_data_key_txt ON contact_data (key, txt);

CREATE TABLE contact_aggregates_new (
    contact_id BIGINT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
    value TEXT, num DOUBLE PRECISION, txt TEXT, expires_at BIGINT,
    PRIMARY KEY (contact_id, name)) WITHOUT ROWID;
INSERT INTO contact_aggregates_new SELECT contact_id, name, state, value, num, txt, NULL
    FROM contact_aggregates;
DROP TABLE contact_aggregates;
ALTER TABLE contact_aggregates_new RENAME TO contact_aggregates;
CREATE INDEX contact_aggregates_name_num ON contact_aggregates (name, num);
CREATE INDEX contact_aggregates_expires ON contact_aggregates (expires_at);

-- Counts by country (the commonest native segment field) answer from the index alone.
DROP INDEX contacts_ws_country;
CREATE INDEX contacts_ws_country ON contacts (workspace, country, merged_into);

-- Merges can be explained: the record that caused them and the identity each contact matched
-- on; a merge refused by a safety rule is kept too (outcome 'refused').
ALTER TABLE contact_merges ADD COLUMN outcome TEXT NOT NULL DEFAULT 'merged';
ALTER TABLE contact_merges ADD COLUMN source TEXT;
ALTER TABLE contact_merges ADD COLUMN stream TEXT;
ALTER TABLE contact_merges ADD COLUMN record_id TEXT;
ALTER TABLE contact_merges ADD COLUMN identity TEXT;
CREATE INDEX contact_merges_merged ON contact_merges (merged);

-- How many contacts each identity value has merged (the merge limit).
ALTER TABLE identities ADD COLUMN merges BIGINT NOT NULL DEFAULT 0;

-- Where each profile field's value came from: JSON {field: {source, stream, record, at}}.
ALTER TABLE contacts ADD COLUMN provenance TEXT;

-- Workspace settings registered from config (identity policy).
CREATE TABLE workspace_settings (
    workspace TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (workspace, name));

-- Saved segments, their materialised members and the feed of who entered or left.
CREATE TABLE segments (
    workspace TEXT NOT NULL, name TEXT NOT NULL, definition TEXT NOT NULL, description TEXT,
    created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace, name));
CREATE TABLE segment_members (
    workspace TEXT NOT NULL, segment TEXT NOT NULL, contact_id BIGINT NOT NULL, since BIGINT NOT NULL,
    PRIMARY KEY (workspace, segment, contact_id));
CREATE TABLE segment_changes (
    id INTEGER PRIMARY KEY, workspace TEXT NOT NULL, segment TEXT NOT NULL,
    contact_id BIGINT NOT NULL, change TEXT NOT NULL, at BIGINT NOT NULL);
CREATE INDEX segment_changes_feed ON segment_changes (workspace, segment, id);

-- Saved shortcuts (templated answers).
CREATE TABLE shortcuts (
    workspace TEXT NOT NULL, name TEXT NOT NULL, template TEXT NOT NULL,
    created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace, name));
