//! `GET /sandboxes/{id}/ports`: TCP ports listening in the guest, read
//! from `/proc/net/tcp{,6}` through the agent (the agent's own ports are
//! left out), each with the proxy URL that reaches it.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use bhatti_engine::engine::{Engine, ExecOptions};
use serde::Serialize;

use super::proxy::AGENT_PORTS;
use super::{RouteDef, Verb, user};
use crate::extract::{ApiPath, ApiResult, AuthUser};
use crate::state::Shared;

pub fn routes<E: Engine>() -> Vec<RouteDef<E>> {
    vec![
        user(
            Verb::Get,
            "/sandboxes/{id}/ports",
            "Listening TCP ports in the guest",
            get(ports::<E>),
        )
        .reply_list::<PortView>(200),
    ]
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PortView {
    pub port: u16,
    pub proxy_url: String,
}

async fn ports<E: Engine>(
    State(st): State<Shared<E>>,
    AuthUser(u): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<PortView>>> {
    let (sb, eid) = st.live(&u, &id).await?;
    let r = st
        .engine
        .exec(
            &eid,
            ExecOptions::new(["cat", "/proc/net/tcp", "/proc/net/tcp6"])
                .output_cap(4 << 20)
                .timeout(std::time::Duration::from_secs(10)),
        )
        .await?;
    let ports = listening_ports(&String::from_utf8_lossy(&r.stdout));
    Ok(Json(
        ports
            .into_iter()
            .map(|port| PortView {
                port,
                proxy_url: format!("/sandboxes/{}/proxy/{port}/", sb.id),
            })
            .collect(),
    ))
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
