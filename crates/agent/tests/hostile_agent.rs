//! The client against an agent that lies, breaks the framing or goes
//! silent (issue 17). The agent is a fake: a Unix socket server in the
//! test that writes exactly the hostile bytes — the client's real boundary
//! is bytes on a socket. Every bad reply must be an error the caller sees
//! (never an empty success) and a warning in the log that names the peer;
//! every deadline must hold without the agent's help.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bhatti_agent::{Client, Error, ExecOptions, ExecRequest, ReadOptions, Supervised};
use bhatti_proto::messages::encode_exit;
use bhatti_proto::{Frame, FrameType, async_io};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};

/// Generous bound for what must happen at once (a hang fails the test).
const SOON: Duration = Duration::from_secs(10);
const PEER: &str = "sandbox-hostile";

/// A fake agent: every connection's request frame is read, then `script`
/// gets the stream and the request.
struct Fake {
    client: Client,
    _dir: tempfile::TempDir,
}

fn fake<F, Fut>(script: F) -> Fake
where
    F: Fn(UnixStream, Frame) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("control.sock");
    let listener = UnixListener::bind(&control).unwrap();
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                let req = async_io::read_frame(&mut s).await.unwrap().unwrap();
                script(s, req).await;
            });
        }
    });
    let client = Client::unix(&control, dir.path().join("forward.sock")).with_peer(PEER);
    Fake { client, _dir: dir }
}

/// Holds the connection open and says nothing more (a wedged agent).
async fn silent(s: UnixStream) {
    std::future::pending::<()>().await;
    drop(s);
}

async fn send(s: &mut UnixStream, kind: FrameType, payload: &[u8]) {
    async_io::write_frame(s, kind, payload).await.unwrap();
}

/// Log lines written while the guard lives (this thread only; the tests
/// run on a current-thread runtime, so the client's tasks log here too).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let w = logs.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish();
        (logs, tracing::subscriber::set_default(sub))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Asserts one warning naming the peer and containing `what`.
    fn assert_warned(&self, what: &str) {
        let text = self.text();
        assert!(
            text.lines()
                .any(|l| l.contains("WARN") && l.contains(PEER) && l.contains(what)),
            "no warning naming {PEER} with {what:?} in:\n{text}"
        );
    }
}

async fn soon<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(SOON, f)
        .await
        .expect("the client hung on a hostile agent")
}

fn protocol_error<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    match r {
        Err(Error::Protocol(m)) => m,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[tokio::test]
async fn negative_file_size_is_a_logged_error() {
    let (logs, _g) = Logs::capture();
    let f = fake(|mut s, _| async move {
        send(
            &mut s,
            FrameType::FILE_READ_RESP,
            br#"{"size":-5,"mode":"0644"}"#,
        )
        .await;
        send(&mut s, FrameType::EXIT, &encode_exit(0)).await;
        silent(s).await;
    });
    let r = soon(f.client.read_file("/x", ReadOptions::default())).await;
    let msg = protocol_error(r);
    assert!(msg.contains("-5"), "{msg}");
    logs.assert_warned("-5");
}

/// A fake agent answering every file read with the FILE_READ_RESP `head`,
/// `body` as output and exit 0; then silent if `hold`, else closed.
fn read_reply(head: &'static [u8], body: &'static [u8], hold: bool) -> Fake {
    fake(move |mut s, _| async move {
        send(&mut s, FrameType::FILE_READ_RESP, head).await;
        send(&mut s, FrameType::STDOUT, body).await;
        send(&mut s, FrameType::EXIT, &encode_exit(0)).await;
        if hold {
            silent(s).await;
        }
    })
}

#[tokio::test]
async fn a_body_that_breaks_the_announced_size_is_an_error() {
    let (logs, _g) = Logs::capture();
    // More than announced.
    let f = read_reply(br#"{"size":3,"mode":"0644"}"#, b"abcdef", true);
    let body = soon(f.client.read_file("/x", ReadOptions::default()))
        .await
        .unwrap();
    let msg = protocol_error(soon(body.read_all()).await);
    assert!(msg.contains("more than the 3"), "{msg}");
    logs.assert_warned("more than the 3");

    // Less than announced: a silent truncation otherwise.
    let f = read_reply(br#"{"size":10,"mode":"0644"}"#, b"abc", true);
    let body = soon(f.client.read_file("/x", ReadOptions::default()))
        .await
        .unwrap();
    let msg = protocol_error(soon(body.read_all()).await);
    assert!(msg.contains("3 of the 10"), "{msg}");

    // More than max_bytes asked for.
    let f = read_reply(br#"{"size":100,"mode":"0644"}"#, b"abcdef", true);
    let opts = ReadOptions {
        max_bytes: Some(2),
        ..ReadOptions::default()
    };
    let body = soon(f.client.read_file("/x", opts)).await.unwrap();
    protocol_error(soon(body.read_all()).await);

    // Size 0 is "unknown" (a v1 agent reading procfs): the body is kept.
    let f = read_reply(br#"{"size":0,"mode":"0444"}"#, b"console=ttyS0", false);
    let body = soon(f.client.read_file("/proc/cmdline", ReadOptions::default()))
        .await
        .unwrap();
    assert_eq!(soon(body.read_all()).await.unwrap(), b"console=ttyS0");
}

#[tokio::test]
async fn malformed_json_is_a_logged_error() {
    let (logs, _g) = Logs::capture();
    let f = fake(|mut s, req| async move {
        let (kind, body): (FrameType, &[u8]) = match req.kind {
            FrameType::FILE_STAT_REQ => (FrameType::FILE_STAT_RESP, b"{not json"),
            FrameType::FILE_LS_REQ => (FrameType::FILE_LS_RESP, b"null"),
            _ => (FrameType::ACTIVITY_RESP, br#"{"last_activity_unix":"x"}"#),
        };
        send(&mut s, kind, body).await;
        silent(s).await;
    });
    protocol_error(soon(f.client.stat("/x")).await);
    logs.assert_warned("FILE_STAT_RESP");
    protocol_error(soon(f.client.ls("/x")).await);
    logs.assert_warned("FILE_LS_RESP");
    protocol_error(soon(f.client.activity()).await);
    logs.assert_warned("ACTIVITY_RESP");
}

/// Writes a bare length field (no type byte, no payload) and goes silent.
async fn bare_length(mut s: UnixStream, len: u32) {
    s.write_all(&len.to_be_bytes()).await.unwrap();
    silent(s).await;
}

#[tokio::test]
async fn a_zero_or_oversized_length_fails_at_once() {
    let (logs, _g) = Logs::capture();
    for len in [0u32, u32::MAX] {
        let f = fake(move |s, _| bare_length(s, len));
        let msg = protocol_error(soon(f.client.stat("/x")).await);
        assert!(msg.contains("length"), "{msg}");

        let r = soon(f.client.exec(ExecOptions::new(["x"]))).await;
        protocol_error(r);

        let mut stream = f
            .client
            .exec_stream(&ExecRequest::command(["x"]))
            .await
            .unwrap();
        protocol_error(soon(stream.next()).await);

        // Inside a file body, after a valid FILE_READ_RESP.
        let f = fake(move |mut s, _| async move {
            send(
                &mut s,
                FrameType::FILE_READ_RESP,
                br#"{"size":0,"mode":"0644"}"#,
            )
            .await;
            bare_length(s, len).await;
        });
        let body = soon(f.client.read_file("/x", ReadOptions::default()))
            .await
            .unwrap();
        protocol_error(soon(body.read_all()).await);
    }
    logs.assert_warned("length 0");
}

#[tokio::test]
async fn a_huge_error_message_is_cut() {
    let f = fake(|mut s, _| async move {
        send(&mut s, FrameType::ERROR, "e".repeat(1_000_000).as_bytes()).await;
        silent(s).await;
    });
    match soon(f.client.stat("/x")).await {
        Err(Error::Agent(a)) => {
            assert!(a.message.chars().count() <= bhatti_proto::text::MESSAGE_MAX + 1);
            assert!(a.message.ends_with('…'));
        }
        other => panic!("expected an agent error, got {other:?}"),
    }
}

#[tokio::test]
async fn exec_timeout_holds_when_the_agent_goes_silent() {
    let f = fake(|s, _| silent(s));
    // Supervised (what the server's exec uses): KILL at the deadline, then
    // a grace for the exit code, then a timeout error.
    let stream = f
        .client
        .exec_stream(&ExecRequest::command(["sleep", "100"]))
        .await
        .unwrap();
    let run = Supervised::new(stream, Some(Duration::from_millis(200)))
        .await
        .with_grace(Duration::from_millis(300));
    match soon(run.collect(1024)).await {
        Err(Error::Timeout(after)) => assert_eq!(after, Duration::from_millis(500)),
        other => panic!("expected a timeout, got {other:?}"),
    }

    // The same run streamed event by event: one timeout, then the end.
    let stream = f
        .client
        .exec_stream(&ExecRequest::command(["sleep", "100"]))
        .await
        .unwrap();
    let mut run = Supervised::new(stream, Some(Duration::from_millis(100)))
        .await
        .with_grace(Duration::from_millis(100));
    assert!(matches!(soon(run.next()).await, Err(Error::Timeout(_))));
    assert!(run.timed_out());
    assert!(matches!(soon(run.next()).await, Ok(None)));

    // The buffered exec.
    let r = soon(
        f.client
            .exec(ExecOptions::new(["sleep", "100"]).timeout(Duration::from_millis(200))),
    )
    .await;
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
}

#[tokio::test]
async fn every_request_gives_up_on_a_silent_agent() {
    let f = fake(|s, _| silent(s));
    let client = f
        .client
        .clone()
        .with_reply_timeout(Duration::from_millis(300));
    let (capture, _guard) = Logs::capture();
    let r = soon(client.stat("/etc/hostname")).await;
    assert!(matches!(r, Err(Error::Timeout(_))), "stat: {r:?}");
    let r = soon(client.ls("/")).await;
    assert!(matches!(r, Err(Error::Timeout(_))), "ls: {r:?}");
    let r = soon(client.read_file("/etc/hostname", Default::default())).await;
    assert!(matches!(r, Err(Error::Timeout(_))), "read: {r:?}");
    let r = soon(client.activity()).await;
    assert!(matches!(r, Err(Error::Timeout(_))), "activity: {r:?}");
    capture.assert_warned("silent");
}
