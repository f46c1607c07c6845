//! Directory watches (protocol version 4): [`Client::watch`] returns a
//! [`Watch`], a stream of [`WatchEvent`]s that lasts until it is dropped
//! (which closes the connection and ends the agent's watch).
//!
//! The read half goes to one reader task that decodes WATCH_EVENT frames
//! into a bounded channel, so [`Watch::next`] is cancel safe (it can sit
//! in a `select!`). A slow consumer back-pressures the agent, whose
//! kernel queue then overflows: that is reported as an
//! [`WatchEventType::Overflow`] event, never hidden.

use std::sync::Arc;

use bhatti_proto::CONTROL_PORT;
use bhatti_proto::async_io;
use bhatti_proto::ext::{WatchEvent, WatchRequest, WatchStarted};
use bhatti_proto::frame::FrameType;
use bhatti_proto::messages::{self, json_frame};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use bhatti_proto::ext::WatchEventType;

use crate::Client;
use crate::connector::BoxStream;
use crate::error::{self, Error, ErrorCode, Result};

/// Events queued between the reader task and the consumer.
const EVENT_QUEUE: usize = 64;

/// A running watch. Dropping it ends the watch.
pub struct Watch {
    /// The watched directory as the agent confirmed it.
    pub path: String,
    rx: mpsc::Receiver<Result<Option<WatchEvent>>>,
    task: JoinHandle<()>,
    /// Kept so the connection stays open until the watch is dropped.
    _w: WriteHalf<BoxStream>,
    done: bool,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("path", &self.path).finish()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watch {
    /// The next event. `Ok(None)` when the agent ended the watch (the
    /// watched directory was removed or moved away); an error of the
    /// agent is [`Error::Agent`]; a connection that ends without either
    /// is [`Error::Closed`]. Cancel safe.
    pub async fn next(&mut self) -> Result<Option<WatchEvent>> {
        if self.done {
            return Ok(None);
        }
        let got = self.rx.recv().await;
        match got {
            Some(Ok(Some(ev))) => Ok(Some(ev)),
            Some(Ok(None)) => {
                self.done = true;
                Ok(None)
            }
            Some(Err(e)) => {
                self.done = true;
                Err(e)
            }
            None => {
                self.done = true;
                Err(Error::Closed("a watch"))
            }
        }
    }
}

impl Client {
    /// Watches directory `path` (and every directory below it when
    /// `recursive`, including ones created later). Returns once the agent
    /// has set the watch: every change after that is reported. Missing →
    /// [`ErrorCode::NotFound`], not a directory →
    /// [`ErrorCode::NotADirectory`].
    pub async fn watch(&self, path: &str, recursive: bool) -> Result<Watch> {
        let req = WatchRequest {
            path: path.to_owned(),
            recursive,
        };
        let frame = json_frame(FrameType::WATCH_REQ, &req)?;
        let mut c = self.open(CONTROL_PORT, frame.kind, &frame.payload).await?;
        let f = c.expect(FrameType::WATCH_RESP, "watch").await?;
        let started: WatchStarted = c.decode("WATCH_RESP", &f.payload)?;
        let (r, w) = tokio::io::split(c.stream);
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let task = tokio::spawn(read_events(r, tx, c.peer));
        Ok(Watch {
            path: started.path,
            rx,
            task,
            _w: w,
            done: false,
        })
    }
}

/// The reader task: WATCH_EVENT frames → events until EXIT, ERROR, EOF
/// or an error.
async fn read_events(
    mut r: ReadHalf<BoxStream>,
    tx: mpsc::Sender<Result<Option<WatchEvent>>>,
    peer: Arc<str>,
) {
    let mut code = None;
    loop {
        let f = match async_io::read_frame(&mut r).await {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                let _ = tx.send(Err(error::note(&peer, "watch", e.into()))).await;
                return;
            }
        };
        if f.kind.is_known() && f.kind != FrameType::ERROR {
            code = None;
        }
        let item = match f.kind {
            FrameType::WATCH_EVENT => {
                messages::decode_json::<WatchEvent>("WATCH_EVENT", &f.payload)
                    .map(Some)
                    .map_err(Error::from)
            }
            FrameType::EXIT => Ok(None),
            FrameType::ERROR_CODE => {
                code = Some(ErrorCode::from_payload(&f.payload));
                continue;
            }
            FrameType::ERROR => Err(Error::from_agent(code.take(), f.text())),
            k if !k.is_known() => continue,
            k => Err(Error::Protocol(format!("unexpected {k} frame in a watch"))),
        };
        let last = !matches!(item, Ok(Some(_)));
        let item = item.map_err(|e| error::note(&peer, "watch", e));
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}
