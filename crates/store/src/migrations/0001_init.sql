-- Initial schema. Times are unix seconds. Ids are opaque text.

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    key_hash        TEXT NOT NULL UNIQUE,      -- hex SHA-256 of the API key
    max_sandboxes   INTEGER NOT NULL,
    max_cpus        INTEGER NOT NULL,
    max_memory_mb   INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);

CREATE TABLE templates (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    spec        TEXT NOT NULL,                  -- JSON
    created_at  INTEGER NOT NULL,
    UNIQUE (user_id, name)
);

CREATE TABLE sandboxes (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    status          TEXT NOT NULL,              -- running | stopped | unknown | destroyed
    thermal         TEXT NOT NULL,              -- hot | warm | cold
    status_reason   TEXT,                       -- why `unknown`, kept for the user
    ip              TEXT,
    cpus            INTEGER NOT NULL,
    memory_mb       INTEGER NOT NULL,
    keep_hot        INTEGER NOT NULL DEFAULT 0,
    template_id     TEXT,
    image           TEXT NOT NULL,
    agent_token     TEXT NOT NULL,
    spec            TEXT NOT NULL,              -- JSON: everything needed to recreate
    snapshot_path   TEXT,                       -- set while a valid snapshot exists
    created_at      INTEGER NOT NULL,
    stopped_at      INTEGER,
    destroyed_at    INTEGER
);
-- Names are unique per user among live (not destroyed) sandboxes.
CREATE UNIQUE INDEX sandboxes_live_name ON sandboxes (user_id, name)
    WHERE status != 'destroyed';

CREATE TABLE secrets (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    ciphertext  BLOB NOT NULL,                  -- age-encrypted; never plaintext
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, name)
);

CREATE TABLE volumes (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    size_mb     INTEGER NOT NULL,
    path        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (user_id, name)
);

CREATE TABLE volume_attachments (
    volume_id   TEXT NOT NULL REFERENCES volumes(id) ON DELETE RESTRICT,
    sandbox_id  TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    mount       TEXT NOT NULL,
    readonly    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (volume_id, sandbox_id)
);

CREATE TABLE published_ports (
    alias       TEXT PRIMARY KEY,
    sandbox_id  TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    port        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (sandbox_id, port)
);
