-- Issue 8: the SMS connector and the warning / dispatch modules (see ARCHITECTURE.md,
-- "SMS connector" and "Business modules"). Written once for both backends (portable types).

-- SMS templates: Chinese text with named parameters `${name}`, checked when saved.
CREATE TABLE sms_templates (
    code       TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    body       TEXT NOT NULL,
    params     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
INSERT INTO sms_templates (code, name, body, params, updated_at) VALUES
 ('instant_push_leader', '即时推送（责任领导）',
  '【信访】${unit}收到信访件${case_no}（${summary}），请即时转办。', '["unit","case_no","summary"]', 0),
 ('instant_push_handler', '即时推送（直接经办人）',
  '【信访】您有新交办信访件${case_no}（${summary}），请于3小时内联系信访人。', '["case_no","summary"]', 0),
 ('alert_urgent', '紧急预警',
  '【信访预警】${kind}：${title}，请立即处置。', '["kind","title"]', 0);

-- One row per SMS request (`sms.requested`); `id` is the request id, also the gateway's out id.
-- `attempts` counts calls to the gateway, recorded before each call: a redelivered request with
-- attempts > 0 asks the gateway what it already accepted under the out id before sending.
CREATE TABLE sms_messages (
    id             TEXT PRIMARY KEY,
    template       TEXT NOT NULL,
    params         TEXT NOT NULL,
    reason         TEXT,
    status         TEXT NOT NULL,
    attempts       BIGINT NOT NULL DEFAULT 0,
    error          TEXT,
    correlation_id TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX sms_messages_created ON sms_messages (created_at);

-- Recipients of a request: the number sealed (SM4), masked and blind-indexed; never in clear.
CREATE TABLE sms_recipients (
    message_id   TEXT NOT NULL,
    phone_digest TEXT NOT NULL,
    phone_sealed TEXT NOT NULL,
    phone_masked TEXT NOT NULL,
    role         TEXT,
    status       TEXT NOT NULL,
    error_code   TEXT,
    reason       TEXT,
    biz_id       TEXT,
    sent_at      BIGINT,
    report_at    BIGINT,
    reports      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, phone_digest)
);
CREATE INDEX sms_recipients_phone ON sms_recipients (phone_digest, sent_at);

-- Word lists live in `word_lists` (migration 0004, issue 7): list = 'sensitive' | 'hot'.

-- Words matched in a record (tags), written by the warning module.
CREATE TABLE record_tags (
    record_id  TEXT NOT NULL,
    list       TEXT NOT NULL,
    word       TEXT NOT NULL,
    category   TEXT,
    tagged_at  BIGINT NOT NULL,
    PRIMARY KEY (record_id, list, word)
);

-- Alerts (预警) and their graded flow (5.1.5.2.4). `dedup_key` makes a raised alert unique per
-- cause (record and kind, division and day).
CREATE TABLE alerts (
    id         TEXT PRIMARY KEY,
    dedup_key  TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,
    level      TEXT NOT NULL,
    status     TEXT NOT NULL,
    record_id  TEXT,
    division   TEXT NOT NULL,
    org        TEXT,
    title      TEXT NOT NULL,
    detail     TEXT NOT NULL,
    history    TEXT NOT NULL,
    raised_at  BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX alerts_raised ON alerts (raised_at);

-- Petitions and work orders counted per kind, division and day, for surge detection.
CREATE TABLE warning_daily_counts (
    kind     TEXT NOT NULL,
    division TEXT NOT NULL,
    day      TEXT NOT NULL,
    count    BIGINT NOT NULL,
    PRIMARY KEY (kind, division, day)
);

-- Durable timers (the 10-day key-risk timer of 12345 work orders): survive restarts.
CREATE TABLE warning_timers (
    record_id TEXT NOT NULL,
    kind      TEXT NOT NULL,
    due_at    BIGINT NOT NULL,
    division  TEXT NOT NULL,
    title     TEXT NOT NULL,
    state     TEXT NOT NULL,
    fired_at  BIGINT,
    PRIMARY KEY (record_id, kind)
);
CREATE INDEX warning_timers_due ON warning_timers (state, due_at);

-- Role holders (liaison, petition director, unit director, bureau leader, responsible leader,
-- handler): the mobile sealed, masked and blind-indexed.
CREATE TABLE role_holders (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    post          TEXT,
    org           TEXT NOT NULL,
    mobile_sealed TEXT NOT NULL,
    mobile_masked TEXT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX role_holders_org ON role_holders (org, role);

-- Auto-assignment rules: content-class prefix (and optionally division) -> responsible unit.
CREATE TABLE assignment_rules (
    id                   TEXT PRIMARY KEY,
    content_class_prefix TEXT NOT NULL,
    division             TEXT,
    unit                 TEXT NOT NULL,
    priority             BIGINT NOT NULL DEFAULT 0,
    updated_at           BIGINT NOT NULL
);

-- Assignments made by the dispatch module (one per petition).
CREATE TABLE assignments (
    record_id   TEXT PRIMARY KEY,
    unit        TEXT NOT NULL,
    rule_id     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    assigned_at BIGINT NOT NULL
);

-- Duplicate candidates (判重): same person and same matter, with the summary similarity.
CREATE TABLE duplicate_candidates (
    record_id    TEXT NOT NULL,
    candidate_id TEXT NOT NULL,
    score        REAL NOT NULL,
    matched_on   TEXT NOT NULL,
    detected_at  BIGINT NOT NULL,
    PRIMARY KEY (record_id, candidate_id)
);
