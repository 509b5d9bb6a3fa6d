-- Nonces of signed requests on SQLite: an append-only log that reloads the writer's replay
-- cache after a restart (see store/src/nonces.rs). No index on the nonce: random index pages
-- dirtied at every commit were the cost this log removes. Pruned from its start.
CREATE TABLE nonce_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    app_key    TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
