-- Contacts whose aggregates and session data a large load (a stream's first read) left to be
-- computed once at the end of the run, instead of once per batch that touched them. Written
-- in the same transaction as the batch, so a crash leaves them here for the next run.
CREATE TABLE derived_pending (
    workspace TEXT NOT NULL, contact_id BIGINT NOT NULL,
    PRIMARY KEY (workspace, contact_id));
