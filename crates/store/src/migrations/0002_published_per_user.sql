-- Published aliases belong to a user. Each user has their own alias
-- namespace (`UNIQUE (user_id, alias)`), so a taken alias of another user
-- is never a conflict and cannot be discovered by trying to publish it.
-- The public host name is `<alias>-<tag>.<public domain>`, where `tag` is
-- the user's random public tag (`publish_tags`, made on first publish):
-- the same alias of two users maps to two host names.
--
-- Existing rows keep their alias, sandbox and port; their owners get a
-- tag now, so they are served at `<alias>-<tag>` from here on. Rows that
-- published the guest agent's own ports (1024 control, 1025 forward) are
-- dropped: those ports were never meant to be public.

CREATE TABLE publish_tags (
    user_id     TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    tag         TEXT NOT NULL UNIQUE            -- 8 lower-case hex digits
);

INSERT INTO publish_tags (user_id, tag)
    SELECT user_id, lower(hex(randomblob(4)))
    FROM (SELECT DISTINCT s.user_id
          FROM published_ports p JOIN sandboxes s ON s.id = p.sandbox_id);

CREATE TABLE published_ports_per_user (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    alias       TEXT NOT NULL,
    sandbox_id  TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
    port        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, alias),
    UNIQUE (sandbox_id, port)
);

INSERT INTO published_ports_per_user (user_id, alias, sandbox_id, port, created_at)
    SELECT s.user_id, p.alias, p.sandbox_id, p.port, p.created_at
    FROM published_ports p JOIN sandboxes s ON s.id = p.sandbox_id
    WHERE p.port NOT IN (1024, 1025);

DROP TABLE published_ports;
ALTER TABLE published_ports_per_user RENAME TO published_ports;
