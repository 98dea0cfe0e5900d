-- Admin keys may read the relay's operational endpoints (GET /v1/relay/channels).
ALTER TABLE keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;

-- One row the readiness probe writes, so /readyz proves the store is writable.
CREATE TABLE readiness (id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL);
