use std::collections::BTreeMap;

use bhatti_store::sandboxes::OnExpire;

use super::*;

fn row(id: &str, user: &str, name: &str) -> Sandbox {
    Sandbox {
        id: id.into(),
        user_id: user.into(),
        name: name.into(),
        status: Status::Running,
        thermal: Thermal::Hot,
        status_reason: None,
        ip: None,
        cpus: 1,
        memory_mb: 512,
        keep_hot: false,
        template_id: None,
        image: "busybox".into(),
        spec: serde_json::Value::Null,
        created_at: 0,
        stopped_at: None,
        destroyed_at: None,
        labels: BTreeMap::new(),
        expires_at: None,
        on_expire: OnExpire::Destroy,
    }
}

fn engine(id: &str, state: SandboxState, seq: u64) -> StateEvent {
    StateEvent {
        id: id.parse().expect("id"),
        state,
        seq,
        note: None,
    }
}

fn drain(feed: &mut Feed) -> Vec<(Kind, String, String)> {
    let mut out = Vec::new();
    loop {
        let item = match feed.backlog.pop_front() {
            Some(item) => item,
            None => match feed.rx.try_recv() {
                Ok(e) => Item::Event(e),
                Err(_) => return out,
            },
        };
        if let Item::Event(e) = item
            && e.user_id == feed.user_id
        {
            out.push((e.kind, e.sandbox.name.clone(), e.state.clone()));
        }
    }
}

#[test]
fn each_change_once_in_engine_order_and_only_to_its_owner() {
    let hub = Events::empty();
    let mut alice = hub.subscribe("alice", None);
    let mut bob = hub.subscribe("bob", None);
    // Booting: nothing until the create is announced.
    hub.engine_state(&engine("sb-a", SandboxState::Hot, 1), None);
    hub.created(&row("sb-a", "alice", "web"), 1);
    hub.engine_state(&engine("sb-a", SandboxState::Hot, 1), None);
    hub.engine_state(&engine("sb-a", SandboxState::Cold, 3), None);
    // Older than the one published: ignored.
    hub.engine_state(&engine("sb-a", SandboxState::Warm, 2), None);
    hub.port("sb-a", 8080, true);
    hub.engine_state(&engine("sb-a", SandboxState::Stopped, 4), None);
    hub.engine_state(&engine("sb-a", SandboxState::Destroyed, 5), None);
    hub.destroyed("sb-a");
    let s = |k, st: &str| (k, "web".to_owned(), st.to_owned());
    assert_eq!(
        drain(&mut alice),
        vec![
            s(Kind::Created, "running/hot"),
            s(Kind::State, "running/cold"),
            s(Kind::PortOpened, "running/cold"),
            s(Kind::State, "stopped"),
            s(Kind::Destroyed, "destroyed"),
        ]
    );
    assert_eq!(drain(&mut bob), vec![]);
}

#[test]
fn resuming_replays_the_ring_or_says_events_were_lost() {
    let hub = Events::empty();
    hub.created(&row("sb-a", "alice", "a"), 1);
    hub.created(&row("sb-b", "bob", "b"), 1);
    hub.created(&row("sb-c", "alice", "c"), 1);
    let names = |f: &mut Feed| drain(f).into_iter().map(|e| e.1).collect::<Vec<_>>();
    assert_eq!(names(&mut hub.subscribe("alice", Some(0))), ["a", "c"]);
    assert_eq!(names(&mut hub.subscribe("alice", Some(1))), ["c"]);
    assert_eq!(
        names(&mut hub.subscribe("alice", Some(3))),
        Vec::<String>::new()
    );
    let future = hub.subscribe("alice", Some(99));
    assert_eq!(
        future.backlog.front(),
        Some(&Item::Lagged { missed: None }),
        "an id from an earlier run"
    );
    for n in 0..RING {
        hub.port("sb-b", u16::try_from(n % 60_000).unwrap_or(1), true);
    }
    let old = hub.subscribe("alice", Some(1));
    assert_eq!(old.backlog.front(), Some(&Item::Lagged { missed: None }));
}

#[test]
fn sandboxes_that_existed_at_start_are_known() {
    let hub = Events::empty();
    hub.with(|i| {
        i.known
            .insert("sb-a".into(), known(&row("sb-a", "alice", "old"), 0))
    });
    let mut f = hub.subscribe("alice", None);
    let renamed = row("sb-a", "alice", "new");
    hub.engine_state(&engine("sb-a", SandboxState::Hot, 7), Some(&renamed));
    hub.engine_state(&engine("sb-a", SandboxState::Warm, 8), Some(&renamed));
    assert_eq!(
        drain(&mut f),
        vec![(Kind::State, "new".to_owned(), "running/warm".to_owned())]
    );
}

#[test]
fn events_serialise_as_documented() {
    let hub = Events::empty();
    let mut f = hub.subscribe("alice", None);
    hub.created(&row("sb-a", "alice", "web"), 1);
    hub.port("sb-a", 80, true);
    let Ok(created) = f.rx.try_recv() else {
        panic!("no event")
    };
    let v = serde_json::to_value(&*created).expect("json");
    assert_eq!(v["seq"], 1);
    assert_eq!(v["type"], "created");
    assert_eq!(
        v["sandbox"],
        serde_json::json!({"id": "sb-a", "name": "web"})
    );
    assert_eq!(v["state"], "running/hot");
    assert!(v.get("port").is_none() && v.get("user_id").is_none());
    assert!(v["at"].as_str().is_some_and(|s| s.ends_with('Z')));
    let Ok(port) = f.rx.try_recv() else {
        panic!("no event")
    };
    let v = serde_json::to_value(&*port).expect("json");
    assert_eq!(
        (v["type"].as_str(), v["port"].as_u64()),
        (Some("port_opened"), Some(80))
    );
}

#[tokio::test]
async fn a_slow_subscriber_is_told_it_lagged_and_goes_on() {
    let hub = Events::empty();
    hub.created(&row("sb-a", "alice", "a"), 1);
    let mut f = hub.subscribe("alice", None);
    for n in 0..=CHANNEL {
        hub.port("sb-a", u16::try_from(n + 1).unwrap_or(1), true);
    }
    assert!(matches!(
        f.next().await,
        Some(Item::Lagged { missed: Some(1) })
    ));
    let next = f.next().await;
    assert!(
        matches!(&next, Some(Item::Event(e)) if e.port == Some(2)),
        "{next:?}"
    );
    hub.close();
    let mut rest = 0;
    while f.next().await.is_some() {
        rest += 1;
    }
    assert!(rest < CHANNEL, "ends once closed");
}
