-- Only windowed rules set an expiry. The other rules' rows (most of them) stay out of the
-- expiry index, so writing their values no longer updates it. The sweep's
-- `expires_at <= now` implies `expires_at IS NOT NULL`, so it still uses the index.
DROP INDEX contact_aggregates_expires;
CREATE INDEX contact_aggregates_expires ON contact_aggregates (expires_at) WHERE expires_at IS NOT NULL;
