-- A per-user cap on the disk space their snapshots take (issue:
-- snapshots, fork and restore-based create), in MB. 20 GiB by default.
ALTER TABLE users ADD COLUMN max_storage_mb INTEGER NOT NULL DEFAULT 20480;
