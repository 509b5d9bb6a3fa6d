-- Partner clients: app key, sealed secret (SM4, see xfhub-security), scopes as JSON arrays.
CREATE TABLE clients (
    app_key           TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    secret_sealed     TEXT NOT NULL,
    old_secret_sealed TEXT,
    old_valid_until   INTEGER,
    scopes            TEXT NOT NULL,
    info_sets         TEXT NOT NULL,
    divisions         TEXT NOT NULL,
    disabled          INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

-- Nonces seen inside the signature window: a second use is a replay. Survives restarts.
CREATE TABLE nonces (
    app_key    TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (app_key, nonce)
);
CREATE INDEX nonces_expiry ON nonces (expires_at);

-- Audit log: append-only, each entry holds the SM3 hash of the previous one.
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    remote    TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- Blind index: keyed SM3 digests of identity and phone numbers, for exact look-up.
CREATE TABLE pii_index (
    field     TEXT NOT NULL,
    digest    TEXT NOT NULL,
    record_id TEXT NOT NULL,
    PRIMARY KEY (field, digest, record_id)
);
CREATE INDEX pii_index_record ON pii_index (record_id);

-- Progress of re-encryption under a new key, per table, so a rotation resumes.
CREATE TABLE key_rotation (
    table_name TEXT PRIMARY KEY,
    target_key TEXT NOT NULL,
    cursor     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
