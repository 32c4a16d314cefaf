-- Times are epoch microseconds (BIGINT); custom values are DataValue JSON with a numeric
-- (`num`) and a text (`txt`) projection for filtering. Flags are 0/1 integers.
CREATE TABLE workspaces (id TEXT PRIMARY KEY, created_at BIGINT NOT NULL);

CREATE TABLE sources (
    workspace TEXT NOT NULL, name TEXT NOT NULL, connector TEXT NOT NULL,
    config TEXT NOT NULL, streams TEXT NOT NULL, schedule TEXT, updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace, name));

CREATE TABLE stream_states (
    workspace TEXT NOT NULL, source TEXT NOT NULL, stream TEXT NOT NULL,
    state TEXT NOT NULL, updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace, source, stream));

CREATE TABLE contacts (
    id INTEGER PRIMARY KEY, workspace TEXT NOT NULL,
    email TEXT, phone TEXT, first_name TEXT, last_name TEXT, company TEXT, country TEXT,
    city TEXT, locale TEXT,
    created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, source_updated_at BIGINT,
    merged_into BIGINT);
CREATE INDEX contacts_ws_id ON contacts (workspace, id);
CREATE INDEX contacts_ws_email ON contacts (workspace, email);
CREATE INDEX contacts_ws_country ON contacts (workspace, country);

CREATE TABLE identities (
    workspace TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,
    contact_id BIGINT NOT NULL, created_at BIGINT NOT NULL,
    PRIMARY KEY (workspace, kind, value));
CREATE INDEX identities_contact ON identities (contact_id);

CREATE TABLE contact_merges (
    workspace TEXT NOT NULL, survivor BIGINT NOT NULL, merged BIGINT NOT NULL,
    reason TEXT NOT NULL, at BIGINT NOT NULL);
CREATE INDEX contact_merges_survivor ON contact_merges (survivor);

CREATE TABLE contact_data (
    contact_id BIGINT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    num DOUBLE PRECISION, txt TEXT, own SMALLINT NOT NULL,
    session_id BIGINT, session_at BIGINT, updated_at BIGINT NOT NULL,
    PRIMARY KEY (contact_id, key));
CREATE INDEX contact_data_key_num ON contact_data (key, num);
CREATE INDEX contact_data_key_txt ON contact_data (key, txt);

CREATE TABLE sessions (
    id INTEGER PRIMARY KEY, workspace TEXT NOT NULL, source TEXT NOT NULL, stream TEXT NOT NULL,
    external_id TEXT NOT NULL, kind TEXT NOT NULL, contact_id BIGINT,
    started_at BIGINT NOT NULL, ended_at BIGINT, data TEXT NOT NULL, deleted SMALLINT NOT NULL DEFAULT 0,
    seen_run BIGINT,
    created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
    UNIQUE (workspace, source, stream, external_id));
CREATE INDEX sessions_contact ON sessions (contact_id, started_at, id);
CREATE INDEX sessions_stream ON sessions (workspace, source, stream, seen_run);

CREATE TABLE aggregate_rules (
    workspace TEXT NOT NULL, name TEXT NOT NULL, definition TEXT NOT NULL,
    PRIMARY KEY (workspace, name));

CREATE TABLE contact_aggregates (
    contact_id BIGINT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
    value TEXT, num DOUBLE PRECISION, txt TEXT,
    PRIMARY KEY (contact_id, name));
CREATE INDEX contact_aggregates_name_num ON contact_aggregates (name, num);

CREATE TABLE sync_runs (
    id INTEGER PRIMARY KEY, workspace TEXT NOT NULL, source TEXT NOT NULL, trigger TEXT NOT NULL,
    status TEXT NOT NULL, started_at BIGINT NOT NULL, finished_at BIGINT,
    rows_read BIGINT NOT NULL DEFAULT 0, rows_written BIGINT NOT NULL DEFAULT 0,
    rows_rejected BIGINT NOT NULL DEFAULT 0, error TEXT, streams TEXT NOT NULL DEFAULT '{}');
CREATE INDEX sync_runs_source ON sync_runs (workspace, source, id);

CREATE TABLE rejected_records (
    id INTEGER PRIMARY KEY, workspace TEXT NOT NULL, source TEXT NOT NULL, stream TEXT NOT NULL,
    record_id TEXT, error TEXT NOT NULL, run_id BIGINT, at BIGINT NOT NULL);
