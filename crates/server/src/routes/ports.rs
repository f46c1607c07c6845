//! `GET /sandboxes/{id}/ports`: TCP ports listening in the guest, read
//! from `/proc/net/tcp{,6}` through the agent (the agent's own ports are
//! left out), each with the proxy URL that reaches it and its host-port
//! forward ([`crate::hostports`]). The sandbox is woken, and the scan
//! updates its forwards.
//!
//! `GET /ports`: the same for every running sandbox of the caller, each
//! entry naming its sandbox. It wakes none: a hot sandbox is scanned now,
//! a warm or cold one shows what its last scan saw (its forwards stay
//! open and a connection wakes it); one never scanned since the daemon
//! started, and a stopped one, is left out.
//!
//! Objects carry v1's fields (`container_port`, `proxy_url`,
//! `host_port`) and ours (`port`, equal to `container_port`).
//! `host_port` is `null` when there is no forward: forwards are off
//! (`host_port_bind: null`) or the host bind failed.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use bhatti_engine::engine::Engine;
use bhatti_store::sandboxes::Status;
use serde::Serialize;

use super::proxy::AGENT_PORTS;
use super::{RouteDef, Verb, user};
use crate::extract::{ApiPath, ApiResult, AuthUser};
use crate::hostports::{PortMap, scan};
use crate::state::Shared;

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(
            Verb::Get,
            "/sandboxes/{id}/ports",
            "Listening TCP ports in the guest (wakes the sandbox)",
            get(ports::<E>),
        )
        .reply_list::<PortView>(200),
        user(
            Verb::Get,
            "/ports",
            "Listening TCP ports of all the caller's running sandboxes (wakes none)",
            get(all_ports::<E>),
        )
        .reply_list::<SandboxPortView>(200),
    ]
}

/// A listening guest port.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PortView {
    /// The guest port.
    pub port: u16,
    /// The guest port (v1's name; equal to `port`).
    pub container_port: u16,
    /// The reverse-proxy path that reaches it.
    pub proxy_url: String,
    /// The host TCP port forwarded to it, on the daemon's
    /// `host_port_bind` address; `null` without a forward.
    #[schema(required = true)]
    pub host_port: Option<u16>,
}

/// A listening guest port of one of the caller's sandboxes (`GET /ports`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SandboxPortView {
    pub sandbox_id: String,
    pub sandbox_name: String,
    #[serde(flatten)]
    pub port: PortView,
}

fn views(sandbox_id: &str, ports: &PortMap) -> Vec<PortView> {
    ports
        .iter()
        .map(|(&port, &host_port)| PortView {
            port,
            container_port: port,
            proxy_url: format!("/sandboxes/{sandbox_id}/proxy/{port}/"),
            host_port,
        })
        .collect()
}

async fn ports<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<PortView>>> {
    let (sb, eid) = st.live(&u, &id).await?;
    let ports = scan::guest_ports(&*st.engine, &eid).await?;
    let map = st.host_ports.sync(&st, &sb.id, &ports);
    Ok(Json(views(&sb.id, &map)))
}

async fn all_ports<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
) -> ApiResult<Json<Vec<SandboxPortView>>> {
    let rows: Vec<_> = st
        .store
        .list_sandboxes(&u.id)?
        .into_iter()
        .filter(|sb| sb.status == Status::Running)
        .collect();
    let known =
        futures_util::future::join_all(rows.iter().map(|sb| scan::current(&st, &sb.id))).await;
    let mut out = Vec::new();
    for (sb, ports) in rows.iter().zip(known) {
        let Some(ports) = ports else { continue };
        out.extend(
            views(&sb.id, &ports)
                .into_iter()
                .map(|port| SandboxPortView {
                    sandbox_id: sb.id.clone(),
                    sandbox_name: sb.name.clone(),
                    port,
                }),
        );
    }
    Ok(Json(out))
}

/// Local ports in state LISTEN (`0A`) in `/proc/net/tcp` format text.
pub fn listening_ports(text: &str) -> BTreeSet<u16> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let local = f.nth(1)?;
            let state = f.nth(1)?;
            (state == "0A").then_some(())?;
            u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
        })
        .filter(|p| !AGENT_PORTS.contains(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_sockets_only() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue\n\
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0\n\
   1: 0100007F:0400 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0\n\
   2: 0200D50A:0400 0100D50A:C350 01 00000000:00000000 00:00000000 00000000     0\n\
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 0\n";
        assert_eq!(listening_ports(text), BTreeSet::from([80, 8080]));
    }
}
