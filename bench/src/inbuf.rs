//! A read buffer that parsers look into without copying: the socket reads
//! into [`InBuf::spare`], parsers borrow [`InBuf::data`] and say how much
//! they used. It grows only for a message that does not fit and shrinks
//! back afterwards, so 20,000 idle watchers do not each pin a large buffer.
//! Hand-written rather than a `BytesMut`, which keeps the capacity a 512 KiB
//! snapshot made it grow to for as long as the connection lives.

/// Bytes read from a socket and not yet parsed.
#[derive(Debug)]
pub struct InBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    base: usize,
}

impl InBuf {
    /// A buffer of `capacity` bytes (at least 64).
    pub fn new(capacity: usize) -> Self {
        let base = capacity.max(64);
        Self {
            buf: vec![0; base],
            start: 0,
            end: 0,
            base,
        }
    }

    /// The unparsed bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Number of unparsed bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when everything read has been parsed.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks `n` unparsed bytes as used.
    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.len(), "consumed more than was read");
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Marks `n` unparsed bytes as used and returns them; they stay valid
    /// until the buffer is next changed.
    pub fn take(&mut self, n: usize) -> &[u8] {
        assert!(n <= self.len(), "took more than was read");
        let from = self.start;
        self.consume(n);
        &self.buf[from..from + n]
    }

    /// Free space to read into, big enough to complete a message of `need`
    /// bytes (counted from the first unparsed byte) when the parser knows it
    /// needs that many. Never empty.
    pub fn spare(&mut self, need: usize) -> &mut [u8] {
        let len = self.len();
        if self.start == self.end && self.buf.len() > 2 * self.base {
            // A big message is done with: give its memory back.
            self.buf = vec![0; self.base];
        }
        let target = need.max(len + 1).max(self.base);
        if self.start + target > self.buf.len() || self.buf.len() - self.end < self.base / 4 {
            // Move the partial message to the front, so the rest of it and the
            // next reads land behind it.
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = len;
        }
        if target > self.buf.len() {
            // At least double, so a message of unknown size arriving in small
            // reads does not grow the buffer a few bytes at a time.
            let grown = target.max(2 * self.buf.len());
            self.buf.resize(grown, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of [`InBuf::spare`] as read.
    pub fn advance(&mut self, n: usize) {
        assert!(self.end + n <= self.buf.len(), "read past the buffer");
        self.end += n;
    }

    /// Bytes the buffer holds now, used or not (for tests and reports).
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(b: &mut InBuf, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let spare = b.spare(0);
            let n = spare.len().min(rest.len());
            spare[..n].copy_from_slice(&rest[..n]);
            b.advance(n);
            rest = &rest[n..];
        }
    }

    #[test]
    fn keeps_partial_data_across_compaction() {
        let mut b = InBuf::new(64);
        push(&mut b, &[1; 60]);
        b.consume(58);
        push(&mut b, &[2; 40]);
        assert_eq!(b.len(), 42);
        assert_eq!(&b.data()[..2], &[1, 1]);
        assert!(b.data()[2..].iter().all(|&x| x == 2));
    }

    #[test]
    fn grows_for_a_big_message_and_shrinks_after() {
        let mut b = InBuf::new(64);
        push(&mut b, &[7; 10]);
        assert!(b.spare(1000).len() >= 990);
        push(&mut b, &[7; 990]);
        assert_eq!(b.len(), 1000);
        b.consume(1000);
        assert!(b.spare(0).len() >= 64);
        assert_eq!(b.capacity(), 64);
        // A message whose size is not known grows the buffer too.
        push(&mut b, &[1; 500]);
        assert_eq!(b.len(), 500);
    }
}
