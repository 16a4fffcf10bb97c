//! A reader of PostgreSQL's binary COPY format (`COPY … TO STDOUT (FORMAT binary)`), for the
//! full verification: a million leaves arrive as a few hundred large chunks instead of a
//! million row messages, which is most of what makes verification fast.
//!
//! Format: an 11-byte signature, 4 bytes of flags, a 4-byte header-extension length and the
//! extension; then tuples (an i16 field count, each field an i32 length — −1 for NULL — and
//! its bytes); then the trailer, a field count of −1.

use bytes::{Buf as _, Bytes, BytesMut};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed binary COPY stream: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

#[derive(Default)]
pub struct CopyReader {
    buf: BytesMut,
    header_done: bool,
    finished: bool,
}

impl CopyReader {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// True once the trailer was read.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The next tuple's fields (`None` for SQL NULL), or `Ok(None)` when more bytes are needed
    /// (or the trailer was reached).
    pub fn next_tuple(&mut self) -> Result<Option<Vec<Option<Bytes>>>, Malformed> {
        if self.finished {
            return Ok(None);
        }
        if !self.header_done {
            if self.buf.len() < 19 {
                return Ok(None);
            }
            if &self.buf[..11] != SIGNATURE {
                return Err(Malformed("bad signature"));
            }
            let ext = u32::from_be_bytes([self.buf[15], self.buf[16], self.buf[17], self.buf[18]]);
            let ext = usize::try_from(ext).map_err(|_| Malformed("header extension"))?;
            if self.buf.len() < 19 + ext {
                return Ok(None);
            }
            self.buf.advance(19 + ext);
            self.header_done = true;
        }
        // Measure the whole tuple before consuming any of it.
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let count = i16::from_be_bytes([self.buf[0], self.buf[1]]);
        if count == -1 {
            self.buf.advance(2);
            self.finished = true;
            return Ok(None);
        }
        let count = usize::try_from(count).map_err(|_| Malformed("field count"))?;
        let mut at = 2;
        for _ in 0..count {
            let Some(len) = self.buf.get(at..at + 4) else {
                return Ok(None);
            };
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            at += 4;
            if len > 0 {
                at += usize::try_from(len).map_err(|_| Malformed("field length"))?;
            } else if len < -1 {
                return Err(Malformed("field length"));
            }
            if at > self.buf.len() {
                return Ok(None);
            }
        }
        let mut tuple = self.buf.split_to(at).freeze();
        tuple.advance(2);
        let mut fields = Vec::with_capacity(count);
        for _ in 0..count {
            let len = tuple.get_i32();
            if len < 0 {
                fields.push(None);
            } else {
                let len = usize::try_from(len).map_err(|_| Malformed("field length"))?;
                fields.push(Some(tuple.split_to(len)));
            }
        }
        Ok(Some(fields))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn stream() -> Vec<u8> {
        let mut s = SIGNATURE.to_vec();
        s.extend_from_slice(&0u32.to_be_bytes());
        s.extend_from_slice(&0u32.to_be_bytes());
        for (a, b) in [(&b"one"[..], Some(&b"x"[..])), (&b""[..], None)] {
            s.extend_from_slice(&2i16.to_be_bytes());
            s.extend_from_slice(&(a.len() as i32).to_be_bytes());
            s.extend_from_slice(a);
            match b {
                Some(b) => {
                    s.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    s.extend_from_slice(b);
                }
                None => s.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        s.extend_from_slice(&(-1i16).to_be_bytes());
        s
    }

    #[test]
    fn tuples_are_read_whatever_the_chunking() {
        let s = stream();
        for size in [1, 2, 3, 7, 64] {
            let mut r = CopyReader::default();
            let mut got = Vec::new();
            for chunk in s.chunks(size) {
                r.push(chunk);
                while let Some(t) = r.next_tuple().unwrap() {
                    got.push(t);
                }
            }
            assert!(r.finished());
            assert_eq!(got.len(), 2);
            assert_eq!(got[0][0].as_deref(), Some(&b"one"[..]));
            assert_eq!(got[0][1].as_deref(), Some(&b"x"[..]));
            assert_eq!(got[1][0].as_deref(), Some(&b""[..]));
            assert_eq!(got[1][1], None);
        }
    }

    #[test]
    fn a_wrong_signature_is_refused() {
        let mut s = stream();
        s[0] = b'X';
        let mut r = CopyReader::default();
        r.push(&s);
        assert_eq!(r.next_tuple(), Err(Malformed("bad signature")));
    }
}
