//! The exec parts of the agent bench: sequential execs of `true` and
//! batches of 20 concurrent ones (see the bench's module docs).

use super::*;

pub async fn exec_true(l: &Lohar, nosync: &Lohar, n: &Sizes) {
    // Warm up both paths.
    for _ in 0..10 {
        l.client.exec(ExecOptions::new(["true"])).await.unwrap();
        nosync
            .client
            .exec(ExecOptions::new(["true"]))
            .await
            .unwrap();
        Command::new("true").status().unwrap();
    }
    let mut unsynced = Vec::with_capacity(n.exec_iters);
    let mut agent = Vec::with_capacity(n.exec_iters);
    let mut direct = Vec::with_capacity(n.exec_iters);
    let mut raw = Vec::with_capacity(n.exec_iters);
    let mut reused = Vec::with_capacity(n.exec_iters);
    let pooled = l.client.clone().with_reuse();
    let deferring = l.client.clone().with_reuse().with_deferred_sync();
    let mut deferred = Vec::with_capacity(n.exec_iters);
    let req = json_frame(FrameType::EXEC_REQ, &ExecRequest::command(["true"])).unwrap();
    // Interleave so that machine noise hits all series alike.
    let mut sync = Vec::with_capacity(n.exec_iters);
    for _ in 0..n.exec_iters {
        sync.push(time(rustix::fs::sync));
        raw.push(raw_request(&l.control, &req));
        let t = Instant::now();
        let r = pooled.exec(ExecOptions::new(["true"])).await.unwrap();
        reused.push(t.elapsed());
        assert_eq!(r.exit_code, 0);
        let t = Instant::now();
        let r = deferring.exec(ExecOptions::new(["true"])).await.unwrap();
        deferred.push(t.elapsed());
        assert_eq!(r.exit_code, 0);
        let t = Instant::now();
        let r = l.client.exec(ExecOptions::new(["true"])).await.unwrap();
        agent.push(t.elapsed());
        assert_eq!(r.exit_code, 0);
        let t = Instant::now();
        let st = Command::new("true").status().unwrap();
        direct.push(t.elapsed());
        assert!(st.success());
        let t = Instant::now();
        let r = nosync
            .client
            .exec(ExecOptions::new(["true"]))
            .await
            .unwrap();
        unsynced.push(t.elapsed());
        assert_eq!(r.exit_code, 0);
    }
    let a = stats(&agent);
    let d = stats(&direct);
    println!("\nexec `true` ({} runs)", n.exec_iters);
    report("agent + client", &a, None);
    let ru = stats(&reused);
    report("agent + client, reused connection", &ru, None);
    let de = stats(&deferred);
    report("agent + client, reused, EXIT before sync", &de, None);
    let u = stats(&unsynced);
    report("agent + client, LOHAR_EXEC_SYNC=0", &u, None);
    report("agent, raw blocking frames (no client)", &stats(&raw), None);
    report("direct spawn (baseline)", &d, None);
    println!(
        "  sync() share of an exec at p50: {:.0} µs",
        (a.p50.as_secs_f64() - u.p50.as_secs_f64()) * 1e6
    );
    report("sync() alone (before EXIT)", &stats(&sync), None);
    println!(
        "  p50 ratio agent (a connection per exec)/direct: {:.3}",
        a.p50.as_secs_f64() / d.p50.as_secs_f64()
    );
    println!(
        "  p50 ratio agent, reused connection, sync before EXIT/direct: {:.3}",
        ru.p50.as_secs_f64() / d.p50.as_secs_f64()
    );
    target(
        "p50 ratio agent, reused, EXIT before sync (the engine's)/direct",
        de.p50.as_secs_f64() / d.p50.as_secs_f64(),
        Target::AtMost,
        1.1,
    );
}

async fn exec_batch(c: &Client, k: usize, each: &mut Vec<Duration>) -> Duration {
    let t = Instant::now();
    let tasks: Vec<_> = (0..k)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let r = c.exec(ExecOptions::new(["true"])).await.unwrap();
                assert_eq!(r.exit_code, 0);
                t.elapsed()
            })
        })
        .collect();
    for task in tasks {
        each.push(task.await.unwrap());
    }
    t.elapsed()
}

pub async fn concurrent_exec(l: &Lohar, nosync: &Lohar, n: &Sizes) {
    const K: usize = 20;
    let (mut walls, mut each, mut unsynced, mut threads) = (vec![], vec![], vec![], vec![]);
    let (mut raw, mut reused, mut deferred) = (vec![], vec![], vec![]);
    let pooled = l.client.clone().with_reuse();
    let deferring = l.client.clone().with_reuse().with_deferred_sync();
    let req = json_frame(FrameType::EXEC_REQ, &ExecRequest::command(["true"])).unwrap();
    // Interleaved, so that machine noise hits all series alike.
    for _ in 0..n.batches {
        walls.push(exec_batch(&l.client, K, &mut each).await);
        reused.push(exec_batch(&pooled, K, &mut Vec::new()).await);
        deferred.push(exec_batch(&deferring, K, &mut Vec::new()).await);
        unsynced.push(exec_batch(&nosync.client, K, &mut Vec::new()).await);
        threads.push(threads_spawn(K));
        raw.push(threads_run(K, || {
            raw_request(&l.control, &req);
        }));
    }
    println!("\n{K} concurrent execs of `true` ({} batches)", n.batches);
    let w = stats(&walls);
    report("batch wall time, agent + client", &w, None);
    report("per-exec latency, agent + client", &stats(&each), None);
    let ru = stats(&reused);
    report("batch wall, agent + client, reused", &ru, None);
    let de = stats(&deferred);
    report("batch wall, reused, EXIT before sync", &de, None);
    report(
        "batch wall, agent, LOHAR_EXEC_SYNC=0",
        &stats(&unsynced),
        None,
    );
    report(
        "batch wall, agent, raw frames, 20 threads",
        &stats(&raw),
        None,
    );
    let p = stats(&threads);
    report(
        &format!("batch wall, {K} threads spawn+wait (baseline)"),
        &p,
        None,
    );
    println!(
        "  p50 wall ratio agent (a connection per exec)/parallel spawns: {:.3}",
        w.p50.as_secs_f64() / p.p50.as_secs_f64()
    );
    println!(
        "  p50 wall ratio agent, reused, sync before EXIT/parallel spawns: {:.3}",
        ru.p50.as_secs_f64() / p.p50.as_secs_f64()
    );
    target(
        "p50 wall ratio agent, reused, EXIT before sync (the engine's)/parallel spawns",
        de.p50.as_secs_f64() / p.p50.as_secs_f64(),
        Target::AtMost,
        1.15,
    );
}
