//! Fixed-capacity byte rings: [`Ring`], the scrollback of a TTY session,
//! and [`ChunkRing`], the output of a kept piped exec (stdout and stderr
//! chunks in the order they were read, protocol version 5).
//!
//! Plain data, no locking of their own; the owner keeps them under its
//! state mutex. Writes never fail: when full, the oldest bytes are dropped
//! (a [`ChunkRing`] counts them).

use std::collections::VecDeque;

use bhatti_proto::FrameType;

/// Scrollback capacity of every TTY session (PROTOCOL.md: 64 KiB).
pub const SCROLLBACK: usize = 64 * 1024;

/// A byte ring that keeps the most recent `capacity` bytes.
#[derive(Debug)]
pub struct Ring {
    buf: Vec<u8>,
    capacity: usize,
    /// Index of the next write once the buffer has wrapped.
    head: usize,
    wrapped: bool,
}

impl Ring {
    pub fn new(capacity: usize) -> Self {
        Self {
            buf: Vec::new(),
            capacity: capacity.max(1),
            head: 0,
            wrapped: false,
        }
    }

    /// Appends `data`, dropping the oldest bytes beyond the capacity.
    pub fn push(&mut self, data: &[u8]) {
        // Only the last `capacity` bytes of a large write can survive.
        let data = &data[data.len().saturating_sub(self.capacity)..];
        if !self.wrapped {
            let room = self.capacity - self.buf.len();
            if data.len() <= room {
                self.buf.extend_from_slice(data);
                self.head = self.buf.len() % self.capacity;
                self.wrapped = self.buf.len() == self.capacity;
                return;
            }
            let (first, rest) = data.split_at(room);
            self.buf.extend_from_slice(first);
            self.head = 0;
            self.wrapped = true;
            self.push_wrapped(rest);
            return;
        }
        self.push_wrapped(data);
    }

    fn push_wrapped(&mut self, data: &[u8]) {
        let mut data = data;
        while !data.is_empty() {
            let n = data.len().min(self.capacity - self.head);
            self.buf[self.head..self.head + n].copy_from_slice(&data[..n]);
            self.head = (self.head + n) % self.capacity;
            data = &data[n..];
        }
    }

    /// The held bytes, oldest first.
    pub fn contents(&self) -> Vec<u8> {
        if !self.wrapped {
            return self.buf.clone();
        }
        let mut out = Vec::with_capacity(self.capacity);
        out.extend_from_slice(&self.buf[self.head..]);
        out.extend_from_slice(&self.buf[..self.head]);
        out
    }
}

/// Adjacent chunks of one kind are merged up to this size (fewer frames
/// in a replay).
const MERGE: usize = 64 * 1024;

/// A ring of output chunks, each tagged with its frame type, keeping the
/// most recent `capacity` bytes over all of them in arrival order.
#[derive(Debug)]
pub struct ChunkRing {
    chunks: VecDeque<(FrameType, Vec<u8>)>,
    len: usize,
    capacity: usize,
    dropped: u64,
}

impl ChunkRing {
    pub fn new(capacity: usize) -> Self {
        Self {
            chunks: VecDeque::new(),
            len: 0,
            capacity: capacity.max(1),
            dropped: 0,
        }
    }

    /// Appends `data` of `kind`, dropping the oldest bytes beyond the
    /// capacity (a chunk may be cut at its front).
    pub fn push(&mut self, kind: FrameType, data: &[u8]) {
        let keep = &data[data.len().saturating_sub(self.capacity)..];
        self.dropped += (data.len() - keep.len()) as u64;
        match self.chunks.back_mut() {
            Some((k, last)) if *k == kind && last.len() + keep.len() <= MERGE => {
                last.extend_from_slice(keep);
            }
            _ => self.chunks.push_back((kind, keep.to_vec())),
        }
        self.len += keep.len();
        while self.len > self.capacity {
            let excess = self.len - self.capacity;
            let Some((_, front)) = self.chunks.front_mut() else {
                break;
            };
            let n = excess.min(front.len());
            if n == front.len() {
                self.chunks.pop_front();
            } else {
                front.drain(..n);
            }
            self.len -= n;
            self.dropped += n as u64;
        }
    }

    /// Bytes dropped from the front so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The held chunks, oldest first.
    pub fn chunks(&self) -> impl Iterator<Item = (FrameType, &[u8])> {
        self.chunks.iter().map(|(k, d)| (*k, d.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ring_keeps_order_kinds_and_counts_what_it_drops() {
        let (o, e) = (FrameType::STDOUT, FrameType::STDERR);
        let mut r = ChunkRing::new(8);
        r.push(o, b"ab");
        r.push(o, b"cd");
        r.push(e, b"EF");
        let got: Vec<_> = r.chunks().map(|(k, d)| (k, d.to_vec())).collect();
        assert_eq!(got, [(o, b"abcd".to_vec()), (e, b"EF".to_vec())]);
        r.push(o, b"ghijk");
        let got: Vec<_> = r.chunks().map(|(k, d)| (k, d.to_vec())).collect();
        let want = [
            (o, b"d".to_vec()),
            (e, b"EF".to_vec()),
            (o, b"ghijk".to_vec()),
        ];
        assert_eq!(got, want);
        assert_eq!(r.dropped(), 3);
        r.push(e, b"0123456789");
        let got: Vec<_> = r.chunks().map(|(k, d)| (k, d.to_vec())).collect();
        assert_eq!(got, [(e, b"23456789".to_vec())]);
        assert_eq!(r.dropped(), 3 + 2 + 8);
    }

    #[test]
    fn keeps_everything_below_capacity() {
        let mut r = Ring::new(8);
        r.push(b"abc");
        r.push(b"de");
        assert_eq!(r.contents(), b"abcde");
    }

    #[test]
    fn exact_fill_then_wrap_keeps_newest_in_order() {
        let mut r = Ring::new(4);
        r.push(b"abcd");
        assert_eq!(r.contents(), b"abcd");
        r.push(b"e");
        assert_eq!(r.contents(), b"bcde");
        r.push(b"fgh");
        assert_eq!(r.contents(), b"efgh");
    }

    #[test]
    fn write_larger_than_capacity_keeps_tail() {
        let mut r = Ring::new(4);
        r.push(b"xy");
        r.push(b"0123456789");
        assert_eq!(r.contents(), b"6789");
    }

    #[test]
    fn matches_a_naive_model_over_many_writes() {
        let mut r = Ring::new(SCROLLBACK);
        let mut model: Vec<u8> = Vec::new();
        let mut n: u32 = 7;
        for i in 0..2000u32 {
            // Deterministic pseudo-random sizes, some over the capacity.
            n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let len = (n % 9000) as usize + if i % 500 == 0 { SCROLLBACK } else { 0 };
            let chunk: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            r.push(&chunk);
            model.extend_from_slice(&chunk);
            if model.len() > SCROLLBACK {
                model.drain(..model.len() - SCROLLBACK);
            }
        }
        assert_eq!(r.contents(), model);
    }
}
