-- The engine owns a sandbox's state; the store mirrors it. `state_seq`
-- is the engine's sequence number of the state last written, so that an
-- older state never overwrites a newer one (reset to 0 when the daemon
-- starts, as the engine's counter starts again). The agent token lives
-- with the engine (sandbox.json) and snapshots are engine files: both
-- columns were never written.
ALTER TABLE sandboxes DROP COLUMN agent_token;
ALTER TABLE sandboxes DROP COLUMN snapshot_path;
ALTER TABLE sandboxes ADD COLUMN state_seq INTEGER NOT NULL DEFAULT 0;
