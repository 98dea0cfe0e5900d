-- Asynchronous (is_batch) jobs and their callback deliveries. Times are Unix milliseconds.
CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    owner            INTEGER NOT NULL,          -- keys.id of the key that submitted the job
    request_id       TEXT NOT NULL,
    surface          TEXT NOT NULL,
    work_id          TEXT NOT NULL DEFAULT '',
    chat_id          TEXT NOT NULL DEFAULT '',
    request          BLOB NOT NULL,
    callback         TEXT NOT NULL DEFAULT '',
    status           TEXT NOT NULL,
    result_status    INTEGER NOT NULL DEFAULT 0,
    result           BLOB,
    runs             INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    completed_at     INTEGER NOT NULL DEFAULT 0,
    delivered_at     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_status_due ON jobs(status, next_attempt_at);
CREATE INDEX jobs_owner ON jobs(owner, created_at);

CREATE TABLE job_attempts (
    id           INTEGER PRIMARY KEY,
    job_id       TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    status       INTEGER NOT NULL,           -- the receiver's HTTP status, 0 for none
    error        TEXT NOT NULL DEFAULT '',
    duration_us  INTEGER NOT NULL
);
CREATE INDEX job_attempts_job ON job_attempts(job_id, attempt);
