-- Accepted versions are keyed by the record they belong to (its hub id, a time-ordered UUIDv7)
-- instead of by source system and source id, which the `records` table already indexes. A new
-- record's versions are then appended at the end of the key order instead of landing on a
-- random page of a second source-keyed index, which an import batch rewrote at every commit
-- (see ARCHITECTURE.md, "What a commit writes"). The writer finds a record's id first (it
-- reads the records a group touches anyway) and its versions by (record id, version).
--
-- Versions of records that no longer exist (none: records are never deleted) are not kept.
CREATE TABLE record_versions_by_record (
    record_id TEXT NOT NULL,
    version   INTEGER NOT NULL,
    digest    TEXT NOT NULL,
    receipt   TEXT NOT NULL,
    PRIMARY KEY (record_id, version)
) WITHOUT ROWID;

INSERT INTO record_versions_by_record (record_id, version, digest, receipt)
SELECT r.id, v.version, v.digest, v.receipt
  FROM record_versions v
  JOIN records r
    ON r.kind = v.kind AND r.source_system = v.source_system AND r.source_id = v.source_id;

DROP TABLE record_versions;
ALTER TABLE record_versions_by_record RENAME TO record_versions;
