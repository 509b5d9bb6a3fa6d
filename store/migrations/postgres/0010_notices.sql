-- Issue 9: staff notices (通知公告, spec 5.1.5.3.2-1) of the Xiangyiban app: written by the
-- bureau over the signed admin API, read by staff on their phones (see ARCHITECTURE.md,
-- "Xiangyiban app"). Written once for both backends (portable types; times in ms since the
-- epoch).

-- A notice reaches the staff whose `org_division` starts with `audience_prefix` (the audience
-- division without trailing `00` pairs: `430100` -> `4301`, the whole city).
CREATE TABLE app_notices (
    id                 TEXT PRIMARY KEY,
    title              TEXT NOT NULL,
    body               TEXT NOT NULL,
    level              TEXT NOT NULL,
    audience_division  TEXT NOT NULL,
    audience_prefix    TEXT NOT NULL,
    -- 1 when only holders of one of the notice's roles (`app_notice_roles`) see it.
    roles_only         BIGINT NOT NULL,
    publish_at         BIGINT NOT NULL,
    expires_at         BIGINT,
    -- `active` or `withdrawn`.
    status             TEXT NOT NULL,
    -- When `notification.requested` was published for it (NULL: not yet).
    pushed_at          BIGINT,
    created_by         TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    withdrawn_at       BIGINT
);
CREATE INDEX app_notices_publish ON app_notices (status, publish_at);

CREATE TABLE app_notice_roles (
    notice_id TEXT NOT NULL,
    role      TEXT NOT NULL,
    PRIMARY KEY (notice_id, role)
);

-- Who read which notice.
CREATE TABLE app_notice_reads (
    notice_id TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    read_at   BIGINT NOT NULL,
    PRIMARY KEY (notice_id, user_id)
);
CREATE INDEX app_notice_reads_user ON app_notice_reads (user_id);

-- Staff users the hub has seen (from their tokens): the recipients a published notice is
-- pushed to. The identity service owns the directory; the hub knows only who used the app.
CREATE TABLE app_staff_users (
    user_id       TEXT PRIMARY KEY,
    org_division  TEXT NOT NULL,
    -- The token's roles as `,a,b,` (empty: none).
    roles         TEXT NOT NULL,
    seen_at       BIGINT NOT NULL
);
CREATE INDEX app_staff_users_division ON app_staff_users (org_division);
