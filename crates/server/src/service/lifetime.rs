//! Sandbox lifetime (a TTL) and labels.
//!
//! A TTL is kept as the instant it runs out ([`Sandbox::expires_at`]), so
//! it survives daemon restarts; [`run`] applies due expiries once a
//! second: `destroy` destroys the sandbox, `stop` stops it (and clears the
//! TTL, so a later start does not stop it again). A sandbox that is
//! already stopped only has its TTL cleared by `stop`. Setting a TTL again
//! (create or PATCH) counts from that moment; `ttl_sec: 0` in a PATCH
//! clears it.
//!
//! # Threads, locks, I/O
//! One task ([`run`]); each expiry is one store query and then the same
//! service call a user's destroy or stop makes, with no lock of ours held.

use std::collections::BTreeMap;
use std::time::Duration;

use bhatti_engine::engine::Engine;
use bhatti_store::sandboxes::{OnExpire, Sandbox, Status};

use super::ServiceResult;
use super::validate::{self, Invalid};
use crate::model::OnExpireIn;
use crate::state::{AppState, now_unix};

/// How often due expiries are looked for.
pub const TICK: Duration = Duration::from_secs(1);

/// A TTL asked for at create or in a PATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    /// Unix seconds; `None`: no TTL.
    pub expires_at: Option<i64>,
    pub on_expire: OnExpire,
}

impl Ttl {
    /// The TTL of `ttl_sec` (validated; `0` means none) from now.
    pub fn from_request(
        ttl_sec: Option<u64>,
        on_expire: Option<OnExpireIn>,
        now: i64,
    ) -> Result<Ttl, Invalid> {
        let expires_at = match ttl_sec {
            None | Some(0) => None,
            Some(s) => {
                validate::ttl(s)?;
                // s <= MAX_TTL_SEC, far inside i64.
                Some(now + s as i64)
            }
        };
        Ok(Ttl {
            expires_at,
            on_expire: on_expire.map_or(OnExpire::Destroy, OnExpire::from),
        })
    }
}

/// A create's labels (the template's, the request's over them) and TTL.
pub fn of_create(
    template: BTreeMap<String, String>,
    asked: Option<BTreeMap<String, String>>,
    ttl_sec: Option<u64>,
    on_expire: Option<OnExpireIn>,
) -> Result<(BTreeMap<String, String>, Ttl), Invalid> {
    let mut labels = template;
    labels.extend(asked.unwrap_or_default());
    validate::labels(&labels)?;
    Ok((labels, Ttl::from_request(ttl_sec, on_expire, now_unix())?))
}

/// The sandboxes whose labels include every `(key, value)` of `wanted`.
pub fn with_labels(all: Vec<Sandbox>, wanted: &[(String, String)]) -> Vec<Sandbox> {
    all.into_iter()
        .filter(|s| {
            wanted
                .iter()
                .all(|(k, v)| s.labels.get(k).is_some_and(|have| have == v))
        })
        .collect()
}

/// `label=k=v` query values as pairs; a value without `=` is an error.
pub fn label_filter(query: &[(String, String)]) -> Result<Vec<(String, String)>, Invalid> {
    query
        .iter()
        .filter(|(k, _)| k == "label")
        .map(|(_, kv)| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(Invalid::LabelFilter(validate::excerpt(kv))),
        })
        .collect()
}

impl<E: Engine> AppState<E> {
    /// Applies a PATCH's TTL and labels to `sb`.
    pub fn update_lifetime(
        &self,
        sb: &Sandbox,
        ttl_sec: Option<u64>,
        on_expire: Option<OnExpireIn>,
        labels: Option<BTreeMap<String, String>>,
    ) -> ServiceResult<()> {
        // Every check before any write: a bad PATCH changes nothing.
        if let Some(labels) = &labels {
            validate::labels(labels)?;
        }
        let ttl = match (ttl_sec, on_expire) {
            (Some(_), _) => Some(Ttl::from_request(
                ttl_sec,
                on_expire.or(Some(sb.on_expire.into())),
                now_unix(),
            )?),
            (None, Some(o)) => Some(Ttl {
                expires_at: sb.expires_at,
                on_expire: o.into(),
            }),
            (None, None) => None,
        };
        if let Some(labels) = labels {
            self.store.set_sandbox_labels(&sb.id, &labels)?;
        }
        if let Some(t) = ttl {
            self.store
                .set_sandbox_expiry(&sb.id, t.expires_at, t.on_expire)?;
        }
        Ok(())
    }

    /// Applies every expiry due now.
    pub async fn expire_due(&self) {
        let due = match self.store.expired_sandboxes(now_unix()) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "looking for expired sandboxes");
                return;
            }
        };
        for sb in due {
            if self.creating.contains(&sb.id) {
                continue;
            }
            if let Err(e) = self.expire(&sb).await {
                tracing::warn!(sandbox = %sb.id, error = %e, "applying the TTL");
            }
        }
    }

    async fn expire(&self, sb: &Sandbox) -> ServiceResult<()> {
        tracing::info!(sandbox = %sb.id, name = %sb.name, action = %sb.on_expire, "TTL ran out");
        match sb.on_expire {
            OnExpire::Destroy => self.destroy_sandbox(sb).await,
            OnExpire::Stop => {
                // Cleared first: a stop that fails is not retried every
                // second (its error is logged), and a later start is not
                // stopped again.
                self.store
                    .set_sandbox_expiry(&sb.id, None, OnExpire::Stop)?;
                if sb.status == Status::Running {
                    self.stop_sandbox(sb).await?;
                }
                Ok(())
            }
        }
    }
}

/// Applies due expiries every [`TICK`] until `stop` resolves.
pub async fn run<E: Engine>(
    st: std::sync::Arc<AppState<E>>,
    stop: impl Future<Output = ()> + Send,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => st.expire_due().await,
        }
    }
}
