-- Windowed aggregates: the earliest moment a counted session may leave the window, so a
-- sweep refolds exactly the contacts whose value can have changed with time.
ALTER TABLE contact_aggregates ADD COLUMN expires_at BIGINT;
CREATE INDEX contact_aggregates_expires ON contact_aggregates (expires_at);

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
