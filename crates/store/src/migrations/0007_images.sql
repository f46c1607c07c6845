-- Images users imported or saved (issue 12: bring your own image). The
-- engine keeps an image's disk under its content id (`sha256:<hex>`),
-- once however many users have it; this row is one user's name for it
-- (unique per user), where it came from, what it takes, and its config's
-- defaults (env, working dir, user, entrypoint, cmd) as JSON.
CREATE TABLE images (
    user_id    TEXT NOT NULL REFERENCES users(id),
    name       TEXT NOT NULL,
    image_id   TEXT NOT NULL,
    source     TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    used_bytes INTEGER NOT NULL,
    config     TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, name)
);
CREATE INDEX images_by_image_id ON images (image_id);
