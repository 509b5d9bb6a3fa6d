-- The blind index keeps the first 32 hex digits (128 bits) of each keyed digest
-- (`xfhub_store::pii_key`): half the key, so its indexes have about a third fewer pages, and
-- lookups shorten the digest they are given the same way. 128 bits of HMAC-SM3 keep accidental
-- collisions out of reach (about 2^64 entries before one is likely). On SQLite the table also
-- becomes its own primary-key b-tree; a PostgreSQL table always is a heap beside its indexes.
-- Entries that would coincide once shortened (none in practice) are kept once.
DELETE FROM pii_index a
 USING pii_index b
 WHERE a.field = b.field AND a.record_id = b.record_id
   AND left(a.digest, 32) = left(b.digest, 32) AND a.digest > b.digest;
UPDATE pii_index SET digest = left(digest, 32) WHERE length(digest) > 32;
