-- Session surface (seed session.api): users, their sessions and the sessions' records. Times are Unix
-- milliseconds (answered as seconds).
CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL DEFAULT 'user',
    avatar      TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
);

-- A relay key belongs to a user: its conversations are logged into that user's sessions.
ALTER TABLE keys ADD COLUMN user_id INTEGER NOT NULL DEFAULT 0;

CREATE TABLE sessions (
    id             INTEGER PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    module         INTEGER NOT NULL DEFAULT 1,
    type           TEXT NOT NULL DEFAULT 'chat',
    title          TEXT NOT NULL DEFAULT '',
    abstract       TEXT NOT NULL DEFAULT '',
    model_id       INTEGER NOT NULL DEFAULT 0,
    dataset_id     INTEGER NOT NULL DEFAULT 0,
    document_ids   TEXT NOT NULL DEFAULT '',      -- comma-separated ids
    strategy       TEXT NOT NULL DEFAULT '',
    meta           TEXT NOT NULL DEFAULT '',
    ext_id         TEXT NOT NULL DEFAULT '',      -- external conversation key ('' none)
    total_records  INTEGER NOT NULL DEFAULT 0,    -- kept by the triggers below
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
-- A user's list (optionally by module), newest first with the id as tiebreak.
CREATE INDEX sessions_user_created ON sessions(user_id, created_at, id);
CREATE INDEX sessions_user_module_created ON sessions(user_id, module, created_at, id);
CREATE INDEX sessions_created ON sessions(created_at, id);
CREATE UNIQUE INDEX sessions_ext ON sessions(user_id, module, ext_id) WHERE ext_id <> '';

CREATE TABLE records (
    id                 INTEGER PRIMARY KEY,
    session_id         INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    group_id           INTEGER NOT NULL DEFAULT 0,
    model_id           INTEGER NOT NULL DEFAULT 0,
    model              TEXT NOT NULL DEFAULT '',
    author_id          INTEGER NOT NULL DEFAULT 0,
    content_type       TEXT NOT NULL DEFAULT 'text',
    problem_text       TEXT NOT NULL DEFAULT '',
    answer_text        TEXT NOT NULL DEFAULT '',
    file_url           TEXT NOT NULL DEFAULT '',
    status             TEXT NOT NULL,
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    total_tokens       INTEGER NOT NULL DEFAULT 0,
    tokens_estimated   INTEGER NOT NULL DEFAULT 0,
    error              TEXT NOT NULL DEFAULT '',
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX records_session_created ON records(session_id, created_at, id);
CREATE INDEX records_status ON records(status) WHERE status = 'processing';

CREATE TRIGGER records_count_insert AFTER INSERT ON records BEGIN
    UPDATE sessions SET total_records = total_records + 1, updated_at = max(updated_at, NEW.created_at)
    WHERE id = NEW.session_id;
END;
CREATE TRIGGER records_count_delete AFTER DELETE ON records BEGIN
    UPDATE sessions SET total_records = total_records - 1 WHERE id = OLD.session_id;
END;
