//! Sandboxes: everything needed to show them and to recover them after a
//! daemon restart (owner, name, IP, spec).
//!
//! Status × thermal is a mirror of the engine's state: it is written with
//! the engine's sequence number ([`Store::mirror_sandbox_state`]) and an
//! older state never overwrites a newer one. Only `unknown` (the engine
//! does not hold the sandbox) and `destroyed` are written outright.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rusqlite::{OptionalExtension, Row, params};

use crate::error::conflict;
use crate::{Result, Store, StoreError};

/// Lifecycle status as the API shows it (plus `destroyed`, kept for audit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Running,
    Stopped,
    Unknown,
    Destroyed,
}

/// Where a running sandbox's VM is (DESIGN.md, thermal states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Thermal {
    Hot,
    Warm,
    Cold,
}

macro_rules! text_enum {
    ($ty:ident, $what:literal, $($variant:ident => $text:literal),+ $(,)?) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = StoreError;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(StoreError::Corrupt { what: $what, detail: other.to_string() }),
                }
            }
        }
    };
}

text_enum!(Status, "sandbox status",
    Running => "running", Stopped => "stopped", Unknown => "unknown", Destroyed => "destroyed");
text_enum!(Thermal, "thermal state", Hot => "hot", Warm => "warm", Cold => "cold");

/// What the daemon does to a sandbox when its TTL runs out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum OnExpire {
    #[default]
    Destroy,
    Stop,
}

text_enum!(OnExpire, "on_expire", Destroy => "destroy", Stop => "stop");

/// A stored sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Sandbox {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub status: Status,
    pub thermal: Thermal,
    /// Why the status is `unknown` (or other notable state), for the user.
    pub status_reason: Option<String>,
    pub ip: Option<String>,
    pub cpus: u32,
    pub memory_mb: u32,
    pub keep_hot: bool,
    pub template_id: Option<String>,
    pub image: String,
    /// The creation spec, as JSON, owned by the server.
    pub spec: serde_json::Value,
    pub created_at: i64,
    pub stopped_at: Option<i64>,
    pub destroyed_at: Option<i64>,
    /// User labels (string map).
    pub labels: BTreeMap<String, String>,
    /// Unix seconds at which `on_expire` applies; `None`: no TTL.
    pub expires_at: Option<i64>,
    pub on_expire: OnExpire,
}

const COLUMNS: &str = "id, user_id, name, status, thermal, status_reason, ip, cpus, \
     memory_mb, keep_hot, template_id, image, spec, created_at, stopped_at, destroyed_at, \
     labels, expires_at, on_expire";

/// A row decoded without interpretation; [`Raw::into_sandbox`] validates it.
struct Raw {
    s: Sandbox,
    status: String,
    thermal: String,
    spec: String,
    labels: String,
    on_expire: String,
}

fn raw(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok(Raw {
        status: r.get(3)?,
        thermal: r.get(4)?,
        spec: r.get(12)?,
        labels: r.get(16)?,
        on_expire: r.get(18)?,
        s: Sandbox {
            id: r.get(0)?,
            user_id: r.get(1)?,
            name: r.get(2)?,
            status: Status::Unknown,
            thermal: Thermal::Cold,
            status_reason: r.get(5)?,
            ip: r.get(6)?,
            cpus: r.get(7)?,
            memory_mb: r.get(8)?,
            keep_hot: r.get(9)?,
            template_id: r.get(10)?,
            image: r.get(11)?,
            spec: serde_json::Value::Null,
            created_at: r.get(13)?,
            stopped_at: r.get(14)?,
            destroyed_at: r.get(15)?,
            labels: BTreeMap::new(),
            expires_at: r.get(17)?,
            on_expire: OnExpire::Destroy,
        },
    })
}

impl Raw {
    fn into_sandbox(self) -> Result<Sandbox> {
        let mut s = self.s;
        s.status = self.status.parse()?;
        s.thermal = self.thermal.parse()?;
        s.on_expire = self.on_expire.parse()?;
        s.labels = serde_json::from_str(&self.labels).map_err(|e| StoreError::Corrupt {
            what: "sandbox labels",
            detail: format!("{}: {e}", s.id),
        })?;
        s.spec = serde_json::from_str(&self.spec).map_err(|e| StoreError::Corrupt {
            what: "sandbox spec",
            detail: format!("{}: {e}", s.id),
        })?;
        Ok(s)
    }
}

impl Store {
    /// Inserts a sandbox; a live sandbox of the same user with the same name
    /// is `Conflict`.
    pub fn insert_sandbox(&self, s: &Sandbox) -> Result<()> {
        insert_sandbox(&self.conn(), s)
    }

    /// Creates a sandbox in one transaction: its `new_volumes`, its row and
    /// its volume `attachments` (a volume attached to another live sandbox
    /// is `InUse`). On any error nothing is written.
    pub fn create_sandbox(
        &self,
        s: &Sandbox,
        new_volumes: &[crate::volumes::Volume],
        attachments: &[crate::volumes::Attachment],
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for v in new_volumes {
            crate::volumes::insert_volume(&tx, v)?;
        }
        insert_sandbox(&tx, s)?;
        for a in attachments {
            crate::volumes::insert_attachment(&tx, a)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A live sandbox of `user_id` named by id or by name (an id wins over
    /// another sandbox's equal name); answered from the [`crate::cache`]
    /// while no row has changed.
    pub fn find_sandbox(&self, user_id: &str, id_or_name: &str) -> Result<Sandbox> {
        let conn = self.conn();
        self.cache.sandbox(&conn, user_id, id_or_name, |conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM sandboxes WHERE user_id = ?1 \
                 AND status != 'destroyed' AND (id = ?2 OR name = ?2) \
                 ORDER BY id = ?2 DESC LIMIT 1"
            ))?
            .query_row(params![user_id, id_or_name], raw)
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("sandbox {id_or_name}")))?
            .into_sandbox()
        })
    }

    /// A sandbox by id, whoever owns it and whatever its status.
    pub fn sandbox_by_id(&self, id: &str) -> Result<Sandbox> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM sandboxes WHERE id = ?1"),
                [id],
                raw,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("sandbox {id}")))?
            .into_sandbox()
    }

    /// The live sandboxes of one user, newest first.
    pub fn list_sandboxes(&self, user_id: &str) -> Result<Vec<Sandbox>> {
        self.query_sandboxes(
            "WHERE user_id = ?1 AND status != 'destroyed' ORDER BY created_at DESC, id DESC",
            params![user_id],
        )
    }

    /// Every live sandbox of every user (restart recovery), oldest first.
    pub fn list_live_sandboxes(&self) -> Result<Vec<Sandbox>> {
        self.query_sandboxes(
            "WHERE status != 'destroyed' ORDER BY created_at, id",
            params![],
        )
    }

    pub(crate) fn query_sandboxes(
        &self,
        tail: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Sandbox>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM sandboxes {tail}"))?;
        let rows = stmt.query_map(args, raw)?;
        rows.map(|r| r.map_err(StoreError::from).and_then(Raw::into_sandbox))
            .collect()
    }

    /// Number of live sandboxes, all users (`GET /health`): a count, not
    /// the rows [`Store::list_live_sandboxes`] reads and decodes.
    pub fn count_all_live_sandboxes(&self) -> Result<u64> {
        Ok(self.conn().query_row(
            "SELECT count(*) FROM sandboxes WHERE status != 'destroyed'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Number of live sandboxes a user owns (quota checks).
    pub fn count_live_sandboxes(&self, user_id: &str) -> Result<u32> {
        Ok(self.conn().query_row(
            "SELECT count(*) FROM sandboxes WHERE user_id = ?1 AND status != 'destroyed'",
            [user_id],
            |r| r.get(0),
        )?)
    }

    /// Records a new status, thermal state and reason.
    pub fn set_sandbox_state(
        &self,
        id: &str,
        status: Status,
        thermal: Thermal,
        reason: Option<&str>,
    ) -> Result<()> {
        self.update_one(
            id,
            "status = ?2, thermal = ?3, status_reason = ?4",
            params![id, status.as_str(), thermal.as_str(), reason],
        )
    }

    /// Mirrors the engine's state `seq` of a live sandbox: `false`
    /// (nothing written) when the row already holds a state of a later
    /// `seq`, or is destroyed. Entering `stopped` records `now` as
    /// `stopped_at`; the status reason becomes `reason` (the engine's note).
    pub fn mirror_sandbox_state(
        &self,
        id: &str,
        status: Status,
        thermal: Thermal,
        seq: u64,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let n = self.conn().execute(
            "UPDATE sandboxes SET status = ?2, thermal = ?3, state_seq = ?4, \
             status_reason = ?6, \
             stopped_at = CASE WHEN ?2 = 'stopped' AND status != 'stopped' THEN ?5 \
                               ELSE stopped_at END \
             WHERE id = ?1 AND status != 'destroyed' AND state_seq < ?4",
            params![id, status.as_str(), thermal.as_str(), seq, now, reason],
        )?;
        Ok(n == 1)
    }

    /// Forgets every mirrored sequence number (the daemon calls this at
    /// start, before its engine publishes anything: the engine's counter
    /// starts again at 1).
    pub fn reset_state_seqs(&self) -> Result<()> {
        self.conn()
            .execute("UPDATE sandboxes SET state_seq = 0", [])?;
        Ok(())
    }

    /// Records the guest IP (re-reserved on recovery).
    pub fn set_sandbox_ip(&self, id: &str, ip: Option<&str>) -> Result<()> {
        self.update_one(id, "ip = ?2", params![id, ip])
    }

    /// Renames a live sandbox; a name taken by another live sandbox of the
    /// same user is `Conflict`.
    pub fn rename_sandbox(&self, id: &str, name: &str) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE sandboxes SET name = ?2 WHERE id = ?1 AND status != 'destroyed'",
                params![id, name],
            )
            .map_err(conflict(format!("sandbox {name}")))
            .and_then(|n| expect_one(n, id))
    }

    /// Replaces the creation spec (JSON owned by the server).
    pub fn set_sandbox_spec(&self, id: &str, spec: &serde_json::Value) -> Result<()> {
        self.update_one(id, "spec = ?2", params![id, spec.to_string()])
    }

    /// Sets whether the thermal manager may cool this sandbox.
    pub fn set_sandbox_keep_hot(&self, id: &str, keep_hot: bool) -> Result<()> {
        self.update_one(id, "keep_hot = ?2", params![id, keep_hot])
    }

    /// Marks a sandbox destroyed at `at`, releases its volume attachments and
    /// published ports. The row stays (audit); its name becomes free.
    pub fn mark_sandbox_destroyed(&self, id: &str, at: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        mark_destroyed(&tx, id, at)?;
        tx.commit()?;
        Ok(())
    }

    /// Undoes [`Store::create_sandbox`] after its boot failed, in one
    /// transaction: the row is marked destroyed at `at` (kept for audit),
    /// its attachments released, and the volumes the create made
    /// (`volume_ids`, of `user_id`) deleted.
    pub fn abandon_create(
        &self,
        id: &str,
        user_id: &str,
        volume_ids: &[String],
        at: i64,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        mark_destroyed(&tx, id, at)?;
        for v in volume_ids {
            tx.execute(
                "DELETE FROM volumes WHERE id = ?1 AND user_id = ?2",
                params![v, user_id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn update_one(
        &self,
        id: &str,
        set: &str,
        args: impl rusqlite::Params,
    ) -> Result<()> {
        let n = self.conn().execute(
            &format!("UPDATE sandboxes SET {set} WHERE id = ?1 AND status != 'destroyed'"),
            args,
        )?;
        expect_one(n, id)
    }
}

/// Marks a live sandbox destroyed and releases its attachments and
/// published ports (inside the caller's transaction).
fn mark_destroyed(conn: &rusqlite::Connection, id: &str, at: i64) -> Result<()> {
    let n = conn.execute(
        "UPDATE sandboxes SET status = 'destroyed', destroyed_at = ?2, ip = NULL \
         WHERE id = ?1 AND status != 'destroyed'",
        params![id, at],
    )?;
    expect_one(n, id)?;
    conn.execute("DELETE FROM volume_attachments WHERE sandbox_id = ?1", [id])?;
    conn.execute("DELETE FROM published_ports WHERE sandbox_id = ?1", [id])?;
    Ok(())
}

fn insert_sandbox(conn: &rusqlite::Connection, s: &Sandbox) -> Result<()> {
    conn.execute(
        &format!(
            "INSERT INTO sandboxes ({COLUMNS}) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
                      ?17, ?18, ?19)"
        ),
        params![
            s.id,
            s.user_id,
            s.name,
            s.status.as_str(),
            s.thermal.as_str(),
            s.status_reason,
            s.ip,
            s.cpus,
            s.memory_mb,
            s.keep_hot,
            s.template_id,
            s.image,
            s.spec.to_string(),
            s.created_at,
            s.stopped_at,
            s.destroyed_at,
            labels_json(&s.labels),
            s.expires_at,
            s.on_expire.as_str()
        ],
    )
    .map_err(conflict(format!("sandbox {}", s.name)))?;
    Ok(())
}

fn expect_one(n: usize, id: &str) -> Result<()> {
    if n == 0 {
        Err(StoreError::NotFound(format!("sandbox {id}")))
    } else {
        Ok(())
    }
}

/// Labels as stored: a JSON object of strings.
pub(crate) fn labels_json(labels: &BTreeMap<String, String>) -> String {
    // A map of strings always serialises.
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".to_owned())
}
