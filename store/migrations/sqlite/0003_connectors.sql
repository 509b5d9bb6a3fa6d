-- Pull connectors (issue 4): the cursor and counters of each connector, advanced in the same
-- transaction as the records of the page it covers. (Process events of provincial petitions go to
-- `process_events`, with those written back by responsible units.)

CREATE TABLE connector_state (
    name            TEXT PRIMARY KEY,
    cursor          TEXT NOT NULL,
    pages           BIGINT NOT NULL DEFAULT 0,
    records         BIGINT NOT NULL DEFAULT 0,
    rejected        BIGINT NOT NULL DEFAULT 0,
    last_success_at BIGINT,
    last_error      TEXT,
    last_error_at   BIGINT,
    updated_at      BIGINT NOT NULL
);

-- A rejected record is stored once while unresolved (a repeat of the same source record and
-- version is not stored again): the check looks up (source, source_ref).
CREATE INDEX import_errors_source_ref ON import_errors (source, source_ref);
