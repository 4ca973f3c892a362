//! PostgreSQL schema migrations, applied in order on open under an advisory lock. The
//! `arbiter_schema` table records the version reached. Never edit a migration that has shipped; add the next one.

pub(super) const MIGRATIONS: &[&str] = &[
    // 1: leases and versioned keys.
    r#"
    CREATE TABLE lease_names (
        namespace  TEXT NOT NULL,
        name       TEXT NOT NULL,
        slots      BIGINT NOT NULL,
        last_token BIGINT NOT NULL,
        PRIMARY KEY (namespace, name)
    );
    CREATE TABLE lease_holders (
        namespace   TEXT NOT NULL,
        name        TEXT NOT NULL,
        token       BIGINT NOT NULL,
        holder      TEXT NOT NULL,
        ttl_ms      BIGINT NOT NULL,
        acquired_at BIGINT NOT NULL,
        expires_at  BIGINT NOT NULL,
        PRIMARY KEY (namespace, name, token)
    );
    CREATE TABLE lease_waiters (
        ticket      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        namespace   TEXT NOT NULL,
        name        TEXT NOT NULL,
        holder      TEXT NOT NULL,
        enqueued_at BIGINT NOT NULL,
        expires_at  BIGINT NOT NULL
    );
    CREATE INDEX lease_waiters_by_name ON lease_waiters (namespace, name, ticket);
    CREATE TABLE revision (
        id    INT PRIMARY KEY CHECK (id = 1),
        value BIGINT NOT NULL
    );
    INSERT INTO revision (id, value) VALUES (1, 0);
    CREATE TABLE kv (
        namespace       TEXT NOT NULL,
        key             TEXT NOT NULL,
        value           TEXT NOT NULL,
        version         BIGINT NOT NULL,
        create_revision BIGINT NOT NULL,
        PRIMARY KEY (namespace, key)
    );
    CREATE TABLE kv_events (
        revision  BIGINT PRIMARY KEY,
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
        next_offset BIGINT NOT NULL,
        PRIMARY KEY (namespace, stream)
    );
    CREATE TABLE log_records (
        namespace       TEXT NOT NULL,
        stream          TEXT NOT NULL,
        "offset"        BIGINT NOT NULL,
        kind            TEXT NOT NULL,
        author          TEXT NOT NULL,
        created_at      BIGINT NOT NULL,
        body            TEXT NOT NULL,
        content_type    TEXT NOT NULL,
        tags            TEXT NOT NULL,
        trace_id        TEXT,
        idempotency_key TEXT,
        PRIMARY KEY (namespace, stream, "offset")
    );
    CREATE UNIQUE INDEX log_records_by_key ON log_records (namespace, stream, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE TABLE log_consumers (
        namespace  TEXT NOT NULL,
        stream     TEXT NOT NULL,
        consumer   TEXT NOT NULL,
        "offset"   BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (namespace, stream, consumer)
    );
    "#,
    // 3: notifications: storm folds and the delivery outbox.
    r#"
    CREATE TABLE notify_folds (
        namespace    TEXT NOT NULL,
        dedupe_key   TEXT NOT NULL,
        count        BIGINT NOT NULL,
        first_at     BIGINT NOT NULL,
        last_at      BIGINT NOT NULL,
        notification TEXT NOT NULL,
        channels     TEXT NOT NULL,
        PRIMARY KEY (namespace, dedupe_key)
    );
    CREATE TABLE notify_outbox (
        id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        namespace       TEXT NOT NULL,
        channel         TEXT NOT NULL,
        message         TEXT NOT NULL,
        state           TEXT NOT NULL,
        attempts        BIGINT NOT NULL,
        next_attempt_at BIGINT NOT NULL,
        last_error      TEXT,
        created_at      BIGINT NOT NULL,
        delivered_at    BIGINT,
        digest_at       BIGINT
    );
    CREATE INDEX notify_outbox_pending ON notify_outbox (namespace, state, channel, id);
    "#,
    // 4: the supervisor's loops and their rounds.
    r#"
    CREATE TABLE loop_state (
        namespace            TEXT NOT NULL,
        loop                 TEXT NOT NULL,
        round                BIGINT NOT NULL,
        state                TEXT NOT NULL,
        consecutive_failures BIGINT NOT NULL,
        next_run_at          BIGINT NOT NULL,
        last_status          TEXT,
        last_reason          TEXT,
        last_exit            BIGINT,
        host                 TEXT NOT NULL,
        pid                  BIGINT NOT NULL,
        heartbeat_at         BIGINT NOT NULL,
        PRIMARY KEY (namespace, loop)
    );
    CREATE TABLE loop_rounds (
        namespace  TEXT NOT NULL,
        loop       TEXT NOT NULL,
        round      BIGINT NOT NULL,
        host       TEXT NOT NULL,
        pid        BIGINT NOT NULL,
        started_at BIGINT NOT NULL,
        ended_at   BIGINT,
        status     TEXT NOT NULL,
        exit_code  BIGINT,
        reason     TEXT,
        log_path   TEXT NOT NULL,
        PRIMARY KEY (namespace, loop, round)
    );
    "#,
];
