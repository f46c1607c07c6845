-- Sandbox lifetime and labels (issue: snapshots, fork, TTL). `expires_at`
-- (unix seconds) is when the daemon applies `on_expire` (`destroy` or
-- `stop`); NULL: no TTL. `labels` is a JSON object of strings.
ALTER TABLE sandboxes ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE sandboxes ADD COLUMN expires_at INTEGER;
ALTER TABLE sandboxes ADD COLUMN on_expire TEXT NOT NULL DEFAULT 'destroy';
CREATE INDEX sandboxes_expiry ON sandboxes (expires_at)
    WHERE expires_at IS NOT NULL AND status != 'destroyed';
