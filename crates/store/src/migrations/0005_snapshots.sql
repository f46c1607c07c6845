-- Named snapshots (issue: snapshots, fork, TTL). The engine keeps a
-- snapshot's files under its id (`snap-<hex>`); this row is who owns it,
-- the name they gave it (unique per owner) and what it was taken of (the
-- source sandbox's id and name at the time: the source may be renamed or
-- destroyed later). `labels` is a JSON object of strings, as sandboxes'.
CREATE TABLE snapshots (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    name        TEXT NOT NULL,
    source_id   TEXT NOT NULL,
    source_name TEXT NOT NULL,
    labels      TEXT NOT NULL DEFAULT '{}',
    size_bytes  INTEGER NOT NULL,
    paused_ms   INTEGER NOT NULL DEFAULT 0,
    cpus        INTEGER NOT NULL,
    memory_mb   INTEGER NOT NULL,
    image       TEXT NOT NULL,
    disk_mb     INTEGER,
    created_at  INTEGER NOT NULL,
    UNIQUE (user_id, name)
);
