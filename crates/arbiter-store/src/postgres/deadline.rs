//! The client-side deadline of every statement: a stream between the driver and the socket
//! (or TLS) that follows the protocol's message framing, counts the answers it waits for,
//! and ends the connection when one does not come in time.
//!
//! Every request the driver sends ends in a `Sync` (extended protocol) or is a `Query`
//! (simple protocol); the startup message too gets one `ReadyForQuery` at the end. Each of
//! those is answered by exactly one `ReadyForQuery` (`Z`). While answers are outstanding the
//! deadline runs; each `Z` restarts it for the next one, the last stops it. A write that
//! cannot proceed (the socket's buffers full: a large request to a frozen link) starts it
//! too. An idle connection (a pooled one, or the LISTEN connection between notifications)
//! has none.
//!
//! When the deadline passes, the stream hands the driver a synthesized `ErrorResponse`
//! (SQLSTATE 08006, connection failure) naming the server and the timeout, so the waiting
//! statement fails with that message rather than a bare "connection closed", then fails
//! every later read: the connection ends, its pending statements fail, and the pool drops
//! it. A server that is merely slow gets the server-side `statement_timeout` first (it is
//! set a little shorter), which cancels the statement and keeps the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// What a deadline message says: the server and how long it had.
#[derive(Debug, Clone)]
pub(crate) struct Expiry {
    pub(crate) endpoint: Arc<str>,
    pub(crate) timeout: Duration,
    /// When a deadline of any connection of the same connector last passed (set before the
    /// driver hears of it, so a pool never hands out a connection of a link that just went
    /// silent: see `Connector::expired_since`).
    pub(crate) last_expired: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl Expiry {
    fn message(&self) -> String {
        format!(
            "PostgreSQL at {} did not answer within {} (the statement deadline; set ?statement_timeout= to change it); the connection was closed",
            self.endpoint,
            arbiter_core::duration::format_duration(self.timeout)
        )
    }
}

/// Follows message boundaries in one direction of the protocol.
#[derive(Debug)]
struct Framer {
    /// The header being read: a type byte (not for the startup message) and a length.
    header: [u8; 5],
    have: usize,
    /// Body bytes of the current message still to come.
    remaining: usize,
    /// False until the first message (the untyped startup message) has passed.
    typed: bool,
}

impl Framer {
    fn new(typed: bool) -> Framer {
        Framer {
            header: [0; 5],
            have: 0,
            remaining: 0,
            typed,
        }
    }

    /// Feeds bytes; calls `on_message` with each message's type (`0` for the startup
    /// message) as its header completes.
    fn feed(&mut self, mut data: &[u8], mut on_message: impl FnMut(u8)) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                data = &data[n..];
                continue;
            }
            let header_len = if self.typed { 5 } else { 4 };
            let n = (header_len - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == header_len {
                let (kind, len) = if self.typed {
                    (self.header[0], &self.header[1..5])
                } else {
                    (0, &self.header[0..4])
                };
                let len = u32::from_be_bytes(len.try_into().expect("four bytes")) as usize;
                self.remaining = len.saturating_sub(4);
                self.have = 0;
                self.typed = true;
                on_message(kind);
            }
        }
    }

    fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }
}

/// A stream whose outstanding requests must be answered within a deadline.
pub(crate) struct DeadlineStream<S> {
    inner: S,
    expiry: Expiry,
    sent: Framer,
    received: Framer,
    /// Requests sent and not yet answered (`ReadyForQuery` still to come).
    outstanding: u64,
    deadline: Option<Pin<Box<Sleep>>>,
    /// The synthesized error still to hand out, and how much of it was.
    injected: Option<(Vec<u8>, usize)>,
    expired: bool,
}

impl<S> DeadlineStream<S> {
    pub(crate) fn new(inner: S, expiry: Expiry) -> DeadlineStream<S> {
        DeadlineStream {
            inner,
            expiry,
            sent: Framer::new(false),
            received: Framer::new(true),
            outstanding: 0,
            deadline: None,
            injected: None,
            expired: false,
        }
    }

    fn arm(&mut self, cx: &mut Context<'_>) {
        let mut sleep = Box::pin(tokio::time::sleep(self.expiry.timeout));
        // Register this task now: nothing else may wake it if no answer ever comes.
        let _ = sleep.as_mut().poll(cx);
        self.deadline = Some(sleep);
    }

    /// A write that cannot proceed waits on the peer too: the deadline runs (a request
    /// too large for the socket's buffers never gets its `Sync` out to a frozen link).
    fn blocked(&mut self, cx: &mut Context<'_>) {
        if self.deadline.is_none() {
            self.arm(cx);
        }
    }

    fn expired_error(&self) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, self.expiry.message())
    }

    /// An `ErrorResponse` (FATAL, 08006) carrying the deadline's message.
    fn error_response(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for (field, value) in [
            (b'S', "FATAL"),
            (b'V', "FATAL"),
            (b'C', "08006"),
            (b'M', self.expiry.message().as_str()),
        ] {
            body.push(field);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut message = vec![b'E'];
        message.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        message.extend_from_slice(&body);
        message
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for DeadlineStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.injected.is_some() {
            return this.poll_read_injected(buf);
        }
        if this.expired {
            return Poll::Ready(Err(this.expired_error()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let mut answers = 0;
                this.received.feed(&buf.filled()[before..], |kind| {
                    if kind == b'Z' {
                        answers += 1;
                    }
                });
                if answers > 0 {
                    this.outstanding = this.outstanding.saturating_sub(answers);
                    if this.outstanding > 0 || !this.sent.at_boundary() {
                        this.arm(cx);
                    } else {
                        this.deadline = None;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(deadline) = &mut this.deadline else {
                    return Poll::Pending;
                };
                ready!(deadline.as_mut().poll(cx));
                this.deadline = None;
                this.expired = true;
                *this.expiry.last_expired.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
                tracing::warn!("{}", this.expiry.message());
                if this.received.at_boundary() && buf.remaining() > 0 {
                    this.injected = Some((this.error_response(), 0));
                    return this.poll_read_injected(buf);
                }
                Poll::Ready(Err(this.expired_error()))
            }
        }
    }
}

impl<S> DeadlineStream<S> {
    fn poll_read_injected(&mut self, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let (bytes, done) = self.injected.as_mut().expect("an injected error");
        let n = buf.remaining().min(bytes.len() - *done);
        buf.put_slice(&bytes[*done..*done + n]);
        *done += n;
        if *done == bytes.len() {
            self.injected = None;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DeadlineStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Err(this.expired_error()));
        }
        let n = match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {
                this.blocked(cx);
                return Poll::Pending;
            }
        };
        let mut requests = 0;
        this.sent.feed(&buf[..n], |kind| {
            // The startup message (0), a Sync (S) or a simple Query (Q): one answer each.
            if matches!(kind, 0 | b'S' | b'Q') {
                requests += 1;
            }
        });
        if requests > 0 {
            if this.outstanding == 0 {
                this.arm(cx);
            }
            this.outstanding += requests;
        } else if this.outstanding == 0 {
            if this.sent.at_boundary() {
                this.deadline = None;
            } else {
                // Part of a request is out: the deadline counts from this progress.
                this.arm(cx);
            }
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if flushed.is_pending() {
            this.blocked(cx);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Part of a request is out and nothing more can be written or read (a frozen link
    /// whose buffers are full): the deadline still ends the wait, first with the
    /// synthesized error naming the server, then with errors.
    #[tokio::test]
    async fn a_request_stuck_half_written_still_meets_the_deadline() {
        use tokio::io::AsyncReadExt;
        let (near, _far) = tokio::io::duplex(64);
        let expiry = Expiry {
            endpoint: Arc::from("db.example:5432"),
            timeout: Duration::from_millis(50),
            last_expired: Arc::default(),
        };
        let mut stream = DeadlineStream::new(near, expiry);
        stream.sent = Framer::new(true);
        // A 1000-byte Parse message: 64 bytes fit, then writing blocks.
        let mut message = vec![b'P', 0, 0, 0x03, 0xe8];
        message.resize(1001, 0);
        let mut offset = 0;
        std::future::poll_fn(|cx| {
            while offset < message.len() {
                match Pin::new(&mut stream).poll_write(cx, &message[offset..]) {
                    Poll::Ready(Ok(n)) => offset += n,
                    Poll::Ready(Err(e)) => panic!("{e}"),
                    Poll::Pending => return Poll::Ready(()),
                }
            }
            Poll::Ready(())
        })
        .await;
        assert!(offset < message.len(), "the write blocked");
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
            .await
            .expect("the deadline ends the wait")
            .expect("first the synthesized error");
        assert_eq!(buf[0], b'E');
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.contains("08006") && text.contains("db.example:5432"), "{text}");
        let err = stream.read(&mut buf).await.expect_err("then the connection fails");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn framer_finds_each_message_across_chunks() {
        let mut framer = Framer::new(false);
        let mut kinds = Vec::new();
        // Startup (8 bytes), then Parse-ish 'P' with 2 body bytes, then Sync.
        let bytes = [0, 0, 0, 8, 0, 3, 0, 0, b'P', 0, 0, 0, 6, 1, 2, b'S', 0, 0, 0, 4];
        for chunk in bytes.chunks(3) {
            framer.feed(chunk, |k| kinds.push(k));
        }
        assert_eq!(kinds, vec![0, b'P', b'S']);
        assert!(framer.at_boundary());
    }
}
