-- Partner clients: app key, sealed secret (SM4, see xfhub-security), scopes as JSON arrays.
CREATE TABLE clients (
    app_key           TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    secret_sealed     TEXT NOT NULL,
    old_secret_sealed TEXT,
    old_valid_until   BIGINT,
    scopes            TEXT NOT NULL,
    info_sets         TEXT NOT NULL,
    divisions         TEXT NOT NULL,
    disabled          BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

-- Nonces seen inside the signature window: a second use is a replay. Survives restarts.
CREATE TABLE nonces (
    app_key    TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (app_key, nonce)
);
CREATE INDEX nonces_expiry ON nonces (expires_at);

-- Audit log: append-only, each entry holds the SM3 hash of the previous one.
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    remote    TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

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
    updated_at BIGINT NOT NULL
);
