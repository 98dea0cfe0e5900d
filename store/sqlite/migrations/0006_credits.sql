-- Strategy surface credits: one ai_credit asset per user and credit group, created from the group's
-- defaults on first use and recovered lazily (in the spending transaction). Times are Unix seconds.
CREATE TABLE credit_assets (
    user_id             INTEGER NOT NULL,   -- users.id (no foreign key: a credit row may outlive its user)
    grp                 TEXT NOT NULL,
    quantity            INTEGER NOT NULL,
    recoverable         INTEGER NOT NULL,
    recovery_days       INTEGER NOT NULL,
    recovery_quantity   INTEGER NOT NULL,
    valid_seconds       INTEGER NOT NULL,
    last_recovery_time  INTEGER NOT NULL,
    spent               INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    PRIMARY KEY (user_id, grp)
) WITHOUT ROWID;
