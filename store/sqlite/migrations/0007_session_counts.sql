-- Sessions per user and module, kept by triggers, so an unfiltered session list counts its total
-- without scanning the user's sessions (100,000 sessions: 6 ms -> well under 1 ms).
CREATE TABLE session_counts (
    user_id  INTEGER NOT NULL,
    module   INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (user_id, module)
) WITHOUT ROWID;

INSERT INTO session_counts(user_id, module, n) SELECT user_id, module, count(*) FROM sessions GROUP BY user_id, module;

CREATE TRIGGER session_counts_insert AFTER INSERT ON sessions BEGIN
    INSERT INTO session_counts(user_id, module, n) VALUES (NEW.user_id, NEW.module, 1)
    ON CONFLICT(user_id, module) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER session_counts_delete AFTER DELETE ON sessions BEGIN
    UPDATE session_counts SET n = n - 1 WHERE user_id = OLD.user_id AND module = OLD.module;
END;
CREATE TRIGGER session_counts_module AFTER UPDATE OF module, user_id ON sessions
WHEN NEW.module <> OLD.module OR NEW.user_id <> OLD.user_id BEGIN
    UPDATE session_counts SET n = n - 1 WHERE user_id = OLD.user_id AND module = OLD.module;
    INSERT INTO session_counts(user_id, module, n) VALUES (NEW.user_id, NEW.module, 1)
    ON CONFLICT(user_id, module) DO UPDATE SET n = n + 1;
END;
