//! Writes PDUs rusmppc 0.4 has no method for (`cancel_sm`) on a live session.
//!
//! The session's byte stream passes through [`Splice`], which follows the library's outgoing
//! frames by their `command_length` and slips queued PDUs in only between two of them, so the
//! SMSC never sees a frame cut in half. The library writes only when it has something to
//! send, so whoever queues a PDU then asks it to write (an `enquire_link`, see `cancel`).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::sync::lock;

/// Encoded PDUs waiting for a frame boundary.
type Queue = Arc<Mutex<VecDeque<Vec<u8>>>>;

/// Queues whole encoded PDUs for a [`Splice`]d session; cheap to clone.
#[derive(Clone, Debug, Default)]
pub(super) struct Injector {
    queue: Queue,
}

impl Injector {
    /// Queues one encoded PDU; it goes out before the library's next frame.
    pub(super) fn push(&self, pdu: Vec<u8>) {
        lock(&self.queue).push_back(pdu);
    }
}

/// Where the library's outgoing byte stream is: inside a frame's length, inside its body, or
/// between two frames.
#[derive(Clone, Copy, Debug, Default)]
struct Cursor {
    header: [u8; 4],
    /// Bytes of `command_length` seen.
    have: usize,
    /// Bytes of the current frame still to come after its `command_length`.
    left: usize,
}

impl Cursor {
    fn at_boundary(&self) -> bool {
        self.have == 0 && self.left == 0
    }

    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = self.left.min(bytes.len());
                self.left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (4 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 4 {
                let length = u32::from_be_bytes(self.header);
                self.left = usize::try_from(length)
                    .unwrap_or(usize::MAX)
                    .saturating_sub(4);
                self.have = 0;
            }
        }
    }

    /// How many bytes of `buf` end the library's current (or next) frame.
    fn frame_end(&self, buf: &[u8]) -> usize {
        let mut c = *self;
        let mut i = 0;
        while i < buf.len() {
            let step = if c.left > 0 {
                c.left.min(buf.len() - i)
            } else {
                1
            };
            c.advance(&buf[i..i + step]);
            i += step;
            if c.at_boundary() {
                return i;
            }
        }
        buf.len()
    }
}

/// A session stream that also carries the PDUs of an [`Injector`].
pub(super) struct Splice<S> {
    io: S,
    queue: Queue,
    cursor: Cursor,
    /// An injected PDU being written, and how much of it is out.
    current: Option<(Vec<u8>, usize)>,
}

impl<S> Splice<S> {
    /// Wraps `io`; the injector queues PDUs for it.
    pub(super) fn new(io: S) -> (Splice<S>, Injector) {
        let injector = Injector::default();
        let splice = Splice {
            io,
            queue: Arc::clone(&injector.queue),
            cursor: Cursor::default(),
            current: None,
        };
        (splice, injector)
    }
}

impl<S: AsyncWrite + Unpin> Splice<S> {
    /// Writes queued PDUs while the library is between frames.
    fn poll_injected(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.cursor.at_boundary() {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.current.is_none() {
                self.current = lock(&self.queue).pop_front().map(|b| (b, 0));
            }
            let Some((bytes, written)) = &mut self.current else {
                return Poll::Ready(Ok(()));
            };
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
            if *written >= bytes.len() {
                self.current = None;
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Splice<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Splice<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_injected(cx))?;
        // With PDUs waiting, stop at the end of the library's frame so they go next.
        let limit = if lock(&this.queue).is_empty() {
            buf.len()
        } else {
            this.cursor.frame_end(buf)
        };
        let n = ready!(Pin::new(&mut this.io).poll_write(cx, &buf[..limit]))?;
        this.cursor.advance(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_injected(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn frame(len: u32, fill: u8) -> Vec<u8> {
        let mut f = len.to_be_bytes().to_vec();
        f.resize(len as usize, fill);
        f
    }

    #[tokio::test]
    async fn injected_pdus_land_between_frames_only() {
        let (splice, injector) = Splice::new(Vec::new());
        let mut splice = splice;
        let (a, b) = (frame(20, 0xAA), frame(17, 0xBB));
        // Half of frame a is out when the PDU is queued: it must wait for a's end.
        splice.write_all(&a[..7]).await.unwrap();
        injector.push(frame(16, 0xCC));
        let mut rest = a[7..].to_vec();
        rest.extend_from_slice(&b);
        splice.write_all(&rest).await.unwrap();
        splice.flush().await.unwrap();
        let mut expected = a.clone();
        expected.extend(frame(16, 0xCC));
        expected.extend(b);
        assert_eq!(splice.io, expected);
    }

    #[test]
    fn the_cursor_follows_frames_split_anywhere() {
        let stream: Vec<u8> = [frame(16, 1), frame(33, 2), frame(16, 3)].concat();
        for split in 0..stream.len() {
            let mut c = Cursor::default();
            c.advance(&stream[..split]);
            c.advance(&stream[split..]);
            assert!(c.at_boundary(), "split at {split}");
        }
        let c = Cursor::default();
        assert_eq!(c.frame_end(&stream), 16);
    }
}
