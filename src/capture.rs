//! Bounded capture of a process's output: the head and the tail are kept, the middle dropped.

use std::collections::VecDeque;

/// Keeps at most `limit` bytes of a stream: the first half of the limit as it comes, then a
/// rolling tail of the rest. Memory stays bounded however much is written.
#[derive(Debug)]
pub(crate) struct Capture {
    limit: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

impl Capture {
    pub(crate) fn new(limit: usize) -> Self {
        Capture { limit, head: Vec::new(), tail: VecDeque::new(), total: 0 }
    }

    pub(crate) fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        let head_room = (self.limit / 2).saturating_sub(self.head.len());
        if head_room > 0 && self.tail.is_empty() {
            let n = head_room.min(data.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        let tail_limit = self.limit - self.limit / 2;
        if data.len() >= tail_limit {
            self.tail.clear();
            self.tail.extend(&data[data.len() - tail_limit..]);
            return;
        }
        let overflow = (self.tail.len() + data.len()).saturating_sub(tail_limit);
        self.tail.drain(..overflow);
        self.tail.extend(data);
    }

    /// The kept bytes; when some were dropped, head and tail are joined by a line
    /// `[... N bytes truncated ...]`.
    pub(crate) fn finish(self) -> Vec<u8> {
        let kept = self.head.len() + self.tail.len();
        let dropped = self.total - kept as u64;
        let mut out = self.head;
        if dropped > 0 {
            if out.last().is_some_and(|&b| b != b'\n') {
                out.push(b'\n');
            }
            out.extend_from_slice(format!("[... {dropped} bytes truncated ...]\n").as_bytes());
        }
        out.extend(self.tail);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let mut c = Capture::new(100);
        c.push(b"hello ");
        c.push(b"world");
        assert_eq!(c.finish(), b"hello world");
    }

    #[test]
    fn exactly_the_limit_is_kept_whole() {
        let mut c = Capture::new(10);
        for b in b"0123456789" {
            c.push(&[*b]);
        }
        assert_eq!(c.finish(), b"0123456789");
    }

    #[test]
    fn long_output_keeps_head_and_tail_with_a_marker() {
        let mut c = Capture::new(10);
        c.push(b"abcdefghij");
        c.push(b"klmnopqrstuvwxyz");
        assert_eq!(c.finish(), b"abcde\n[... 16 bytes truncated ...]\nvwxyz");
    }

    #[test]
    fn many_small_writes_keep_the_latest_tail() {
        let mut c = Capture::new(8);
        for i in 0..1000u32 {
            c.push(format!("{}", i % 10).as_bytes());
        }
        let out = String::from_utf8(c.finish()).unwrap();
        assert_eq!(out, "0123\n[... 992 bytes truncated ...]\n6789");
    }

    #[test]
    fn memory_stays_bounded() {
        let mut c = Capture::new(1 << 20);
        let chunk = vec![b'x'; 1 << 16];
        for _ in 0..1600 {
            c.push(&chunk);
        }
        assert!(c.head.len() + c.tail.len() <= 1 << 20);
        assert_eq!(c.total, 1600 << 16);
    }
}
