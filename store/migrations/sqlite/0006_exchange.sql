-- Issue 6: SOAP write-back events, exchange packages and the person register.

-- Handling results written back by responsible units (SOAP WriteBackHandling), as canonical
-- ProcessEvent JSON. `seq` is the cursor of the `process_event` exchange info set. One event per
-- (petition, kind, time): a retried write-back is recognised, not stored twice.
CREATE TABLE process_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    petition_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    division    TEXT NOT NULL,
    body        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (petition_id, kind, occurred_at)
);

-- Every exchange package the hub wrote (export) or applied (import).
CREATE TABLE exchange_packages (
    serial       TEXT NOT NULL,
    direction    TEXT NOT NULL,
    infoset      TEXT NOT NULL,
    counterpart  TEXT NOT NULL,
    cursor_from  INTEGER NOT NULL,
    cursor_to    INTEGER,
    records      INTEGER,
    report       TEXT,
    created_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    PRIMARY KEY (serial, direction)
);

-- Person register (DOMAIN.md section 4): one row per identity number, matched through its
-- keyed blind index; the number and the mobile are sealed like every other personal number.
CREATE TABLE persons (
    id               TEXT PRIMARY KEY,
    id_blind         TEXT NOT NULL UNIQUE,
    id_type          TEXT,
    id_number_sealed TEXT NOT NULL,
    name             TEXT,
    mobile_sealed    TEXT,
    address          TEXT,
    detailed_address TEXT,
    seen_at          INTEGER NOT NULL,
    source           TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- Export pages read the change log of one kind in order.
CREATE INDEX change_log_kind_seq ON change_log (kind, seq);
