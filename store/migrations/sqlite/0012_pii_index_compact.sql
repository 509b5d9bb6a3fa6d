-- The blind index, compacted (see ARCHITECTURE.md, "What a commit writes"). Its entries are
-- keyed by digests, so each insert lands on a random page of the index; an import batch rewrote
-- thousands of those pages at every commit.
--
-- 1. The table is its own primary-key b-tree (WITHOUT ROWID): one random insert per entry
--    instead of a row appended to the table plus a random insert into its key index.
-- 2. An entry keeps the first 32 hex digits (128 bits) of the keyed digest
--    (`xfhub_store::pii_key`): half the key, so the index has about a third fewer pages. Lookups
--    shorten the digest they are given the same way. 128 bits of HMAC-SM3 keep accidental
--    collisions out of reach (about 2^64 entries before one is likely).
CREATE TABLE pii_index_compact (
    field     TEXT NOT NULL,
    digest    TEXT NOT NULL,
    record_id TEXT NOT NULL,
    PRIMARY KEY (field, digest, record_id)
) WITHOUT ROWID;

INSERT INTO pii_index_compact (field, digest, record_id)
SELECT field, substr(digest, 1, 32), record_id FROM pii_index WHERE true
ON CONFLICT (field, digest, record_id) DO NOTHING;

DROP TABLE pii_index;
ALTER TABLE pii_index_compact RENAME TO pii_index;
CREATE INDEX pii_index_record ON pii_index (record_id);
