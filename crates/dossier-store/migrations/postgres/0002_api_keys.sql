-- API keys of the gateway: only a SHA-256 of the secret is kept; the key itself is shown once.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, workspace TEXT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT,
    revoked_at BIGINT, last_used_at BIGINT);
CREATE INDEX api_keys_workspace ON api_keys (workspace, created_at);
