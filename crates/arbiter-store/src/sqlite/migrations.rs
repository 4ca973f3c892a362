//! SQLite schema migrations, applied in order on open. `PRAGMA user_version` records the
//! version reached. Never edit a migration that has shipped; add the next one.

pub(super) const MIGRATIONS: &[&str] = &[
    // 1: leases and versioned keys.
    r#"
    CREATE TABLE lease_names (
        namespace  TEXT NOT NULL,
        name       TEXT NOT NULL,
        slots      INTEGER NOT NULL,
        last_token INTEGER NOT NULL,
        PRIMARY KEY (namespace, name)
    ) WITHOUT ROWID;
    CREATE TABLE lease_holders (
        namespace   TEXT NOT NULL,
        name        TEXT NOT NULL,
        token       INTEGER NOT NULL,
        holder      TEXT NOT NULL,
        ttl_ms      INTEGER NOT NULL,
        acquired_at INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        PRIMARY KEY (namespace, name, token)
    ) WITHOUT ROWID;
    CREATE TABLE lease_waiters (
        ticket      INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace   TEXT NOT NULL,
        name        TEXT NOT NULL,
        holder      TEXT NOT NULL,
        enqueued_at INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    );
    CREATE INDEX lease_waiters_by_name ON lease_waiters (namespace, name, ticket);
    CREATE TABLE revision (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        value INTEGER NOT NULL
    );
    INSERT INTO revision (id, value) VALUES (1, 0);
    CREATE TABLE kv (
        namespace       TEXT NOT NULL,
        key             TEXT NOT NULL,
        value           TEXT NOT NULL,
        version         INTEGER NOT NULL,
        create_revision INTEGER NOT NULL,
        PRIMARY KEY (namespace, key)
    ) WITHOUT ROWID;
    CREATE TABLE kv_events (
        revision  INTEGER PRIMARY KEY,
        namespace TEXT NOT NULL,
        key       TEXT NOT NULL,
        kind      TEXT NOT NULL,
        value     TEXT
    );
    CREATE INDEX kv_events_by_namespace ON kv_events (namespace, revision);
    "#,
    // 2: append-only streams and their consumers.
    r#"
    CREATE TABLE log_streams (
        namespace   TEXT NOT NULL,
        stream      TEXT NOT NULL,
        next_offset INTEGER NOT NULL,
        PRIMARY KEY (namespace, stream)
    ) WITHOUT ROWID;
    CREATE TABLE log_records (
        namespace       TEXT NOT NULL,
        stream          TEXT NOT NULL,
        "offset"        INTEGER NOT NULL,
        kind            TEXT NOT NULL,
        author          TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        body            TEXT NOT NULL,
        content_type    TEXT NOT NULL,
        tags            TEXT NOT NULL,
        trace_id        TEXT,
        idempotency_key TEXT,
        PRIMARY KEY (namespace, stream, "offset")
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX log_records_by_key ON log_records (namespace, stream, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE TABLE log_consumers (
        namespace  TEXT NOT NULL,
        stream     TEXT NOT NULL,
        consumer   TEXT NOT NULL,
        "offset"   INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, stream, consumer)
    ) WITHOUT ROWID;
    "#,
    // 3: notifications: storm folds and the delivery outbox.
    r#"
    CREATE TABLE notify_folds (
        namespace    TEXT NOT NULL,
        dedupe_key   TEXT NOT NULL,
        count        INTEGER NOT NULL,
        first_at     INTEGER NOT NULL,
        last_at      INTEGER NOT NULL,
        notification TEXT NOT NULL,
        channels     TEXT NOT NULL,
        PRIMARY KEY (namespace, dedupe_key)
    ) WITHOUT ROWID;
    CREATE TABLE notify_outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace       TEXT NOT NULL,
        channel         TEXT NOT NULL,
        message         TEXT NOT NULL,
        state           TEXT NOT NULL,
        attempts        INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        created_at      INTEGER NOT NULL,
        delivered_at    INTEGER,
        digest_at       INTEGER
    );
    CREATE INDEX notify_outbox_pending ON notify_outbox (namespace, state, channel, id);
    "#,
    // 4: the supervisor's loops and their rounds.
    r#"
    CREATE TABLE loop_state (
        namespace            TEXT NOT NULL,
        loop                 TEXT NOT NULL,
        round                INTEGER NOT NULL,
        state                TEXT NOT NULL,
        consecutive_failures INTEGER NOT NULL,
        next_run_at          INTEGER NOT NULL,
        last_status          TEXT,
        last_reason          TEXT,
        last_exit            INTEGER,
        host                 TEXT NOT NULL,
        pid                  INTEGER NOT NULL,
        heartbeat_at         INTEGER NOT NULL,
        PRIMARY KEY (namespace, loop)
    ) WITHOUT ROWID;
    CREATE TABLE loop_rounds (
        namespace  TEXT NOT NULL,
        loop       TEXT NOT NULL,
        round      INTEGER NOT NULL,
        host       TEXT NOT NULL,
        pid        INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at   INTEGER,
        status     TEXT NOT NULL,
        exit_code  INTEGER,
        reason     TEXT,
        log_path   TEXT NOT NULL,
        PRIMARY KEY (namespace, loop, round)
    ) WITHOUT ROWID;
    "#,
];
