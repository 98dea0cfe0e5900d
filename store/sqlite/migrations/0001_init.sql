CREATE TABLE keys (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE,
    models      TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX keys_name ON keys(name);

CREATE TABLE request_logs (
    id                 INTEGER PRIMARY KEY,
    time               INTEGER NOT NULL,          -- Unix milliseconds
    request_id         TEXT NOT NULL,
    key_id             INTEGER NOT NULL,
    surface            TEXT NOT NULL,
    model              TEXT NOT NULL,
    upstream_model     TEXT NOT NULL,
    channel            TEXT NOT NULL,
    stream             INTEGER NOT NULL,
    status             INTEGER NOT NULL,
    latency_us         INTEGER NOT NULL,
    ttfb_us            INTEGER NOT NULL,
    prompt_tokens      INTEGER NOT NULL,
    completion_tokens  INTEGER NOT NULL,
    total_tokens       INTEGER NOT NULL,
    tokens_estimated   INTEGER NOT NULL,
    error              TEXT NOT NULL DEFAULT ''
);
CREATE INDEX request_logs_time ON request_logs(time);
CREATE INDEX request_logs_key_time ON request_logs(key_id, time);
