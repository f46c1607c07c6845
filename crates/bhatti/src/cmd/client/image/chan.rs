//! A body stream written by blocking code: a thread of tokio's blocking
//! pool writes through a [`Write`] whose full chunks go down a bounded
//! channel, which the request body reads — at most a few chunks are in
//! memory, and a slow upload slows the writer. An error of the writer is
//! the stream's last item, so the request fails instead of ending as if
//! the body were complete.

use std::io::{self, Write};

use tokio::sync::mpsc;

/// Bytes per chunk sent to the request body.
const CHUNK: usize = 256 * 1024;

/// One chunk of the stream, or the error that ended it.
pub type Chunk = Result<Vec<u8>, io::Error>;

/// Runs `write` on a blocking thread; its output arrives on the receiver.
pub fn spawn<F>(write: F) -> mpsc::Receiver<Chunk>
where
    F: FnOnce(&mut ChanWriter) -> Result<(), String> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut w = ChanWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let res = write(&mut w).and_then(|()| w.flush().map_err(|e| e.to_string()));
        if let Err(e) = res {
            // The receiver may be gone already (the request failed).
            let _ = tx.blocking_send(Err(io::Error::other(e)));
        }
    });
    rx
}

/// A `Write` that sends full chunks down a channel (blocking).
pub struct ChanWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

impl ChanWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload ended"))
    }
}

impl Write for ChanWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
