-- Issue 7: Excel import jobs, their rejected rows, key persons and word lists (see
-- ARCHITECTURE.md, "Excel import and export"). Written once for both backends (portable types).

-- One row per uploaded workbook. Counters move in the same transaction as the batch they count,
-- so rows_read = imported + duplicates + rejected at every commit.
CREATE TABLE excel_jobs (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,           -- petition | workorder | key_person | word_list
    actor            TEXT NOT NULL,           -- app key of the uploader (or `cli`)
    file_name        TEXT NOT NULL,
    file_sha256      TEXT NOT NULL,
    sheet            TEXT NOT NULL,
    headers          TEXT NOT NULL,           -- JSON array: the sheet's header texts, by column
    status           TEXT NOT NULL,           -- running | completed | partial | failed
    rows_total       BIGINT,                  -- data rows announced by the sheet, when known
    rows_read        BIGINT NOT NULL DEFAULT 0,
    imported         BIGINT NOT NULL DEFAULT 0,  -- created or updated
    duplicates       BIGINT NOT NULL DEFAULT 0,  -- already stored with the same content
    rejected         BIGINT NOT NULL DEFAULT 0,
    error_code       TEXT,
    error_message    TEXT,
    error_message_zh TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX excel_jobs_actor ON excel_jobs (actor, created_at);

-- Rejected rows of a job. The original cells (sealed: they may hold identity and phone numbers)
-- are in import_errors, whose source_ref is `ref`; `reasons` repeats the field errors (no
-- personal data) with the template column each belongs to.
CREATE TABLE excel_job_rows (
    job_id  TEXT NOT NULL,
    row_no  BIGINT NOT NULL,                  -- 1-based sheet row number
    ref     TEXT NOT NULL,                    -- `<job id>:<row_no>`
    reasons TEXT NOT NULL,
    PRIMARY KEY (job_id, row_no)
);
-- Rejected rows are found by (source, source_ref); migration 0003 (connectors) creates the same
-- index, whichever migration runs first.
CREATE INDEX IF NOT EXISTS import_errors_source_ref ON import_errors (source, source_ref);

-- 重点人员 key persons, one per identity number. Identity and mobile numbers are sealed (SM4);
-- id_digest is their blind index (`id_number` field), the key of the upsert.
CREATE TABLE key_persons (
    id_digest        TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    id_number_sealed TEXT NOT NULL,
    mobile_sealed    TEXT,
    mobile_digest    TEXT,
    division         TEXT NOT NULL,
    category         TEXT,
    risk_level       TEXT,                    -- high | medium | low
    responsible_unit TEXT,
    remarks          TEXT,
    job_id           TEXT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX key_persons_division ON key_persons (division);

-- Sensitive and hot word lists (敏感词库, 热点词库): list = 'sensitive' | 'hot'. Written by Excel
-- imports; read by the warning module (issue 8), which owns the matching.
CREATE TABLE word_lists (
    list     TEXT NOT NULL,
    word     TEXT NOT NULL,
    category TEXT,
    PRIMARY KEY (list, word)
);
