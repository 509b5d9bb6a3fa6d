-- Issue 9: the Xiangyiban (湘易办) app channel: public accounts, SMS codes, complaints made in
-- the app, evaluations, staff follows and approvals (see ARCHITECTURE.md, "Xiangyiban app").
-- Written once for both backends (portable types; times in ms since the epoch).

-- Public accounts. Identity and mobile numbers are sealed; lookups go through blind indexes.
CREATE TABLE app_users (
    id                   TEXT PRIMARY KEY,
    name                 TEXT NOT NULL,
    id_number_sealed     TEXT NOT NULL,
    id_blind             TEXT NOT NULL UNIQUE,
    mobile_sealed        TEXT NOT NULL,
    mobile_blind         TEXT NOT NULL UNIQUE,
    address              TEXT NOT NULL,
    password_hash        TEXT NOT NULL,
    recovery_question    TEXT NOT NULL,
    recovery_answer_hash TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

-- Failed logins per login name (blind index of the mobile), whether an account exists or not:
-- lockout never tells which accounts exist.
CREATE TABLE app_login_failures (
    login_blind  TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- Public sessions: the digest of an opaque bearer token.
CREATE TABLE app_sessions (
    token_digest TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);

-- SMS verification codes (the code itself is kept only as a keyed digest).
CREATE TABLE app_sms_codes (
    id           TEXT PRIMARY KEY,
    purpose      TEXT NOT NULL,
    mobile_blind TEXT NOT NULL,
    code_digest  TEXT NOT NULL,
    attempts     BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX app_sms_codes_mobile ON app_sms_codes (mobile_blind, created_at);

-- The handling unit of each region a citizen can choose.
CREATE TABLE app_region_units (
    division TEXT PRIMARY KEY,
    unit     TEXT NOT NULL
);
INSERT INTO app_region_units (division, unit) VALUES
 ('430100', '长沙市信访局'),
 ('430102', '芙蓉区信访局'),
 ('430103', '天心区信访局'),
 ('430104', '岳麓区信访局'),
 ('430105', '开福区信访局'),
 ('430111', '雨花区信访局'),
 ('430112', '望城区信访局'),
 ('430121', '长沙县信访局'),
 ('430181', '浏阳市信访局'),
 ('430182', '宁乡市信访局');

-- Complaints made in the app: the query code, the record's source id, the owner, a blind index of the name.
CREATE TABLE app_complaints (
    query_code  TEXT PRIMARY KEY,
    source_id   TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL,
    name_blind  TEXT NOT NULL,
    division    TEXT NOT NULL,
    unit        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX app_complaints_user ON app_complaints (user_id, created_at);

-- Their attachments; the bytes are sealed in files under `<data_dir>/app/attachments`.
CREATE TABLE app_attachments (
    query_code   TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    file_name    TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    PRIMARY KEY (query_code, seq)
);

-- One evaluation per case: the primary key refuses a second one, also under a race.
CREATE TABLE app_evaluations (
    query_code   TEXT PRIMARY KEY,
    record_id    TEXT NOT NULL,
    result       TEXT NOT NULL,
    body         TEXT NOT NULL,
    evaluated_at BIGINT NOT NULL
);

-- Staff follows and approval actions (approve, comment).
CREATE TABLE app_follows (
    user_id    TEXT NOT NULL,
    record_id  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, record_id)
);
CREATE TABLE app_approvals (
    id         TEXT PRIMARY KEY,
    record_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    org        TEXT NOT NULL,
    action     TEXT NOT NULL,
    comment    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX app_approvals_user ON app_approvals (user_id, created_at);

-- Push messages to app users (`notification.requested`, connectors/src/xiangyiban): one row
-- per (notification, recipient), the key also the app message service's message id.
CREATE TABLE app_push (
    message_key     TEXT PRIMARY KEY,
    notification_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    title           TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    delivered_at    BIGINT
);
CREATE INDEX app_push_user ON app_push (user_id, created_at);

-- The verification code text sent through the SMS connector (issue 8's templates).
INSERT INTO sms_templates (code, name, body, params, updated_at) VALUES
 ('app_verify_code', '湘易办验证码',
  '【湘易办】您的验证码为${code}，5分钟内有效，请勿泄露给他人。', '["code"]', 0);
