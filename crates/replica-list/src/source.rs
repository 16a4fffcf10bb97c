//! The input as the XML reader sees it: counts lines for error messages and refuses to hand
//! out bytes past a limit, so that one oversized entry cannot make us buffer the whole file.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

/// Fold newline positions into a count once this many lie behind the reader.
const NEWLINES_BEHIND: usize = 4096;

pub(crate) struct TrackedSource<R> {
    inner: R,
    /// Bytes consumed from `inner`.
    consumed: u64,
    /// Bytes beyond this absolute position are not handed out.
    limit: u64,
    /// Set when a read stopped at `limit`.
    limit_hit: bool,
    /// Set when `inner` reported end of input.
    eof: bool,
    /// Bytes up to this absolute position have been scanned for newlines.
    scanned: u64,
    /// Newlines before the positions still in `newlines`.
    folded_lines: u64,
    /// Absolute positions of the newlines not yet folded, ascending; they include newlines
    /// scanned ahead of the XML reader, in bytes it has not consumed yet.
    newlines: Vec<u64>,
    /// Entries of `newlines` before this index lie behind the reader.
    behind: usize,
}

impl<R> TrackedSource<R> {
    pub(crate) fn new(inner: R) -> Self {
        TrackedSource {
            inner,
            consumed: 0,
            limit: u64::MAX,
            limit_hit: false,
            eof: false,
            scanned: 0,
            folded_lines: 0,
            newlines: Vec::with_capacity(NEWLINES_BEHIND * 2),
            behind: 0,
        }
    }

    /// Hand out no byte at or beyond absolute position `limit`.
    pub(crate) fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    pub(crate) fn limit_hit(&self) -> bool {
        self.limit_hit
    }

    pub(crate) fn at_eof(&self) -> bool {
        self.eof
    }

    /// No line will be asked for before `pos` any more: fold what lies before it.
    pub(crate) fn forget_before(&mut self, pos: u64) {
        // Called for every event: step forward (each newline is passed once) and fold in
        // batches, rather than searching and shifting the vector each time.
        while self.newlines.get(self.behind).is_some_and(|&p| p < pos) {
            self.behind += 1;
        }
        if self.behind >= NEWLINES_BEHIND {
            self.folded_lines += self.behind as u64;
            self.newlines.drain(..self.behind);
            self.behind = 0;
        }
    }

    /// 1-based line of absolute byte position `pos` (a position at or after the last
    /// `forget_before`).
    pub(crate) fn line_at(&self, pos: u64) -> u64 {
        1 + self.folded_lines + self.newlines.partition_point(|&p| p < pos) as u64
    }
}

impl<R: AsyncBufRead + Unpin> AsyncBufRead for TrackedSource<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        let allowed = this.limit.saturating_sub(this.consumed);
        if allowed == 0 {
            this.limit_hit = true;
            return Poll::Ready(Err(io::Error::other("size limit reached")));
        }
        let buf = ready!(Pin::new(&mut this.inner).poll_fill_buf(cx))?;
        if buf.is_empty() {
            this.eof = true;
            return Poll::Ready(Ok(buf));
        }
        let buf = &buf[..buf
            .len()
            .min(usize::try_from(allowed).unwrap_or(usize::MAX))];
        let end = this.consumed + buf.len() as u64;
        if end > this.scanned {
            // `scanned` never lags behind `consumed`: only bytes handed out here are consumed.
            let from = usize::try_from(this.scanned - this.consumed).unwrap_or(usize::MAX);
            push_newlines(
                &mut this.newlines,
                &buf[from.min(buf.len())..],
                this.scanned,
            );
            this.scanned = end;
        }
        Poll::Ready(Ok(buf))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.consumed += amt as u64;
        Pin::new(&mut this.inner).consume(amt);
    }
}

/// Appends the positions of the newlines in `bytes` (which starts at absolute `base`).
fn push_newlines(out: &mut Vec<u64>, bytes: &[u8], base: u64) {
    // Eight bytes at a time: lines are tens of bytes long, so most words hold no newline.
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let mut chunks = bytes.chunks_exact(8);
    let mut at = base;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word) ^ NEWLINES;
        // Non-zero exactly when some byte of `x` is zero, i.e. some byte was a newline.
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            push_newlines_bytewise(out, chunk, at);
        }
        at += 8;
    }
    push_newlines_bytewise(out, chunks.remainder(), at);
}

fn push_newlines_bytewise(out: &mut Vec<u64>, bytes: &[u8], base: u64) {
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            out.push(base + i as u64);
        }
    }
}

impl<R: AsyncBufRead + Unpin> AsyncRead for TrackedSource<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let available = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = available.len().min(out.remaining());
        out.put_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_are_found_wherever_they_are() {
        let mut bytes = vec![b'x'; 67];
        for at in [0, 7, 8, 9, 15, 16, 31, 63, 64, 66] {
            bytes[at] = b'\n';
        }
        bytes[20] = 0x8a; // high bit set, not a newline
        bytes[21] = 0x0b;
        let mut found = Vec::new();
        push_newlines(&mut found, &bytes, 100);
        assert_eq!(found, [100, 107, 108, 109, 115, 116, 131, 163, 164, 166]);
    }
}
