-- Records: the latest version of each source record, canonical JSON plus indexed key columns.
CREATE TABLE records (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    source_system TEXT NOT NULL,
    source_id     TEXT NOT NULL,
    version       BIGINT NOT NULL,
    division      TEXT NOT NULL,
    form          TEXT,
    purpose       TEXT,
    content_class TEXT,
    status        TEXT NOT NULL,
    occurred_on   TEXT NOT NULL,
    body          TEXT NOT NULL,
    received_at   BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (kind, source_system, source_id)
);
CREATE INDEX records_kind_division ON records (kind, division, id);
CREATE INDEX records_kind_occurred ON records (kind, occurred_on, id);

-- Every accepted (source, version) with the receipt first answered for it: idempotency.
CREATE TABLE record_versions (
    kind          TEXT NOT NULL,
    source_system TEXT NOT NULL,
    source_id     TEXT NOT NULL,
    version       BIGINT NOT NULL,
    digest        TEXT NOT NULL,
    receipt       TEXT NOT NULL,
    PRIMARY KEY (kind, source_system, source_id, version)
);

-- Change log: strictly increasing sequence in commit order (single writer).
CREATE TABLE change_log (
    seq        BIGSERIAL PRIMARY KEY,
    record_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    op         TEXT NOT NULL,
    version    BIGINT NOT NULL,
    changed_at BIGINT NOT NULL
);

-- Outbox: messages committed with the change that caused them, published by the relay.
CREATE TABLE outbox (
    seq          BIGSERIAL PRIMARY KEY,
    message_id   TEXT NOT NULL UNIQUE,
    message_type TEXT NOT NULL,
    routing_key  TEXT NOT NULL,
    envelope     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    sent_at      BIGINT
);
CREATE INDEX outbox_unsent ON outbox (sent_at, seq);

-- Embedded bus: one row per (queue, message) until acked or dead-lettered. `envelope` is NULL
-- when the message is in the outbox (read from there: no second copy is written).
CREATE TABLE bus_queue (
    id           BIGSERIAL PRIMARY KEY,
    queue        TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    envelope     TEXT,
    attempts     BIGINT NOT NULL DEFAULT 0,
    available_at BIGINT NOT NULL,
    lease_until  BIGINT,
    last_error   TEXT,
    enqueued_at  BIGINT NOT NULL,
    UNIQUE (queue, message_id)
);
CREATE INDEX bus_queue_ready ON bus_queue (queue, available_at, id);

-- Consumer idempotency: (consumer, message) recorded in the transaction of the effect.
CREATE TABLE consumer_dedup (
    consumer     TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, message_id)
);

CREATE TABLE dead_letters (
    id          BIGSERIAL PRIMARY KEY,
    queue       TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    envelope    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    failed_at   BIGINT NOT NULL,
    replayed_at BIGINT
);
CREATE INDEX dead_letters_open ON dead_letters (replayed_at, id);

-- Records that failed mapping or validation: raw input and every reason, for correction.
CREATE TABLE import_errors (
    id          BIGSERIAL PRIMARY KEY,
    source      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    source_ref  TEXT,
    raw         TEXT NOT NULL,
    reasons     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    resolved_at BIGINT
);

-- Message trail: each hop of each message (published, delivered, retried, acked, dead, replayed).
CREATE TABLE message_trail (
    id         BIGSERIAL PRIMARY KEY,
    message_id TEXT NOT NULL,
    hop        TEXT NOT NULL,
    queue      TEXT,
    attempt    BIGINT,
    detail     TEXT,
    at         BIGINT NOT NULL
);
CREATE INDEX message_trail_msg ON message_trail (message_id, id);
