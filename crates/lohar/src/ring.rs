//! Fixed-capacity byte ring: the scrollback of a TTY session.
//!
//! Plain data, no locking of its own; the owning session keeps it under its
//! state mutex. Writes never fail: when full, the oldest bytes are dropped.

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

#[cfg(test)]
mod tests {
    use super::*;

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
