-- PostgreSQL keeps nonces in `nonces`, whose unique index serves several hub processes; the
-- SQLite-only `nonce_log` of this migration number has no counterpart here.
SELECT 1;
