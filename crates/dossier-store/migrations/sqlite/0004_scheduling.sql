-- The schedule of each source, shared by every scheduler on the store: the schedule as
-- configured (a change resets the due time), when it is next due,
-- whether it is paused, a pending manual trigger (a flag, so triggers coalesce), a cancel
-- request, who holds its lease and until when, and its health.
CREATE TABLE source_schedules (
    workspace TEXT NOT NULL, source TEXT NOT NULL,
    schedule TEXT,
    paused SMALLINT NOT NULL DEFAULT 0,
    next_due BIGINT,
    triggered SMALLINT NOT NULL DEFAULT 0,
    cancel_requested SMALLINT NOT NULL DEFAULT 0,
    lease_owner TEXT, lease_expires BIGINT, lease_run BIGINT, lease_due BIGINT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0, last_error TEXT,
    last_success_at BIGINT, last_run_at BIGINT,
    PRIMARY KEY (workspace, source));

-- Running schedulers (`dossier serve` / `dossier worker`), by heartbeat.
CREATE TABLE schedulers (
    workspace TEXT NOT NULL, owner TEXT NOT NULL, host TEXT NOT NULL, started_at BIGINT NOT NULL,
    heartbeat BIGINT NOT NULL,
    PRIMARY KEY (workspace, owner));

-- A run remembers the schedule slot it served and the stream states it ended at.
ALTER TABLE sync_runs ADD COLUMN due_at BIGINT;
ALTER TABLE sync_runs ADD COLUMN end_state TEXT;
ALTER TABLE sync_runs ADD COLUMN owner TEXT;
