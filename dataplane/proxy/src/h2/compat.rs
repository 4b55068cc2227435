//! tokio's `AsyncRead` / `AsyncWrite` over the proxy's own streams, for the
//! `h2` crate (which is runtime-agnostic: it needs only those two traits).
//!
//! Our streams do rent-style I/O ([`ReadIo`] / [`WriteIo`]: an owned
//! buffer goes into the operation and comes back). The adapter owns a read
//! half and a write half; a pending operation is a boxed future that owns
//! the half and the buffer until it completes, then hands both back. The
//! two directions run independently, so h2 can write (e.g. a SETTINGS ack)
//! while a read is pending.
//!
//! Writes are buffered: `poll_write` copies into the outgoing buffer and
//! starts (or queues behind the one in flight) a socket write, returning
//! at once; `poll_flush` completes them. At most [`MAX_QUEUED`] bytes wait
//! behind a write in flight, so memory stays bounded when the peer does
//! not read.
//!
//! Reads can be inspected: a server connection passes each chunk through
//! a [`FrameGuard`](super::guard::FrameGuard) before h2 sees it; when the
//! guard trips, the chunk is withheld, the reason is published through
//! [`Tripped`] and the connection's task is woken to send GOAWAY and
//! close.

use std::{
    cell::Cell,
    future::Future,
    io,
    mem::take,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::guard::FrameGuard;
use crate::io::{ReadIo, WriteIo};

/// How long a server connection being closed keeps reading (and
/// discarding) what the client still sends, and how much: closing a
/// socket with unread bytes sends a RST, which can destroy the GOAWAY we
/// just wrote before the client reads it.
const LINGER: std::time::Duration = std::time::Duration::from_millis(500);
const LINGER_BYTES: usize = 256 * 1024;

/// Read size (grown by the half when a read would have less room).
const READ_BUF: usize = 16 * 1024;
/// Bytes accepted from h2 while a socket write is in flight.
pub const MAX_QUEUED: usize = 64 * 1024;

type ReadFut<R> = Pin<Box<dyn Future<Output = (R, io::Result<usize>, Vec<u8>)>>>;
type WriteFut<W> = Pin<Box<dyn Future<Output = (W, io::Result<usize>, Vec<u8>)>>>;
type ShutFut<W> = Pin<Box<dyn Future<Output = (W, io::Result<()>)>>>;

enum ReadState<R> {
    Idle(R),
    Reading(ReadFut<R>),
    /// A read failed, or the half is gone.
    Done,
}

enum WriteState<W> {
    Idle(W),
    Writing(WriteFut<W>),
    ShuttingDown(ShutFut<W>),
    Done,
}

/// Why a connection was closed by its guard (shared with the task that
/// drives the h2 connection).
pub type Tripped = Rc<Cell<Option<&'static str>>>;

/// An `AsyncRead + AsyncWrite` over a read half and a write half.
pub struct Compat<R: ReadIo + 'static, W: WriteIo + 'static> {
    read: ReadState<R>,
    /// Bytes read and not yet given to the reader: `rbuf[rpos..]`.
    rbuf: Vec<u8>,
    rpos: usize,
    write: WriteState<W>,
    /// Bytes accepted and not yet handed to a socket write.
    queued: Vec<u8>,
    /// The buffer of the last completed write, reused for the next one.
    spare: Vec<u8>,
    /// An error from a write that completed after `poll_write` returned.
    write_error: Option<io::Error>,
    guard: Option<(FrameGuard, Tripped)>,
}

// The halves are never pinned: they move in and out of the boxed
// operations by value.
impl<R: ReadIo + 'static, W: WriteIo + 'static> Unpin for Compat<R, W> {}

impl<R: ReadIo + 'static, W: WriteIo + 'static> Compat<R, W> {
    /// `pre` holds bytes already read from the connection (protocol
    /// detection); they are read first.
    pub fn new(r: R, w: W, pre: Vec<u8>) -> Self {
        let rbuf = if pre.capacity() == 0 {
            Vec::with_capacity(READ_BUF)
        } else {
            pre
        };
        Compat {
            read: ReadState::Idle(r),
            rbuf,
            rpos: 0,
            write: WriteState::Idle(w),
            queued: Vec::new(),
            spare: Vec::new(),
            write_error: None,
            guard: None,
        }
    }

    /// Inspect every byte read with `guard` (the pre-read bytes too).
    pub fn with_guard(mut self, mut guard: FrameGuard, tripped: Tripped) -> Self {
        if let Err((reason, at)) = guard.inspect(&self.rbuf) {
            tripped.set(Some(reason));
            self.rbuf.truncate(at);
        }
        self.guard = Some((guard, tripped));
        self
    }

    /// Whether bytes wait to be written (queued or in flight).
    pub fn write_pending(&self) -> bool {
        !self.queued.is_empty() || matches!(self.write, WriteState::Writing(_))
    }

    fn start_write(&mut self, w: W) {
        let mut buf = take(&mut self.spare);
        buf.clear();
        std::mem::swap(&mut buf, &mut self.queued);
        let end = buf.len();
        self.write = WriteState::Writing(Box::pin(async move {
            let mut w = w;
            let (r, b) = w.write_range(buf, end).await;
            (w, r, b)
        }));
    }

    /// Drive the write in flight to completion (and start the queued one
    /// after it) until nothing is in flight or the socket would block.
    /// `Ready(Ok)` when idle with nothing queued.
    fn poll_writes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if let Some(e) = self.write_error.take() {
                return Poll::Ready(Err(e));
            }
            match &mut self.write {
                WriteState::Writing(f) => match f.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready((w, r, b)) => {
                        self.spare = b;
                        match r {
                            Ok(_) => self.write = WriteState::Idle(w),
                            Err(e) => {
                                self.write = WriteState::Done;
                                self.queued.clear();
                                return Poll::Ready(Err(e));
                            }
                        }
                    }
                },
                WriteState::Idle(_) => {
                    if self.queued.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    let WriteState::Idle(w) = std::mem::replace(&mut self.write, WriteState::Done)
                    else {
                        unreachable!()
                    };
                    self.start_write(w);
                }
                WriteState::ShuttingDown(_) | WriteState::Done => {
                    return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
                }
            }
        }
    }
}

impl<R: ReadIo + 'static, W: WriteIo + 'static> Drop for Compat<R, W> {
    fn drop(&mut self) {
        // Server connections only (those with a guard), and only while the
        // client has not closed its side.
        if self.guard.is_none() {
            return;
        }
        let pending = match std::mem::replace(&mut self.read, ReadState::Done) {
            ReadState::Idle(r) => Linger::Idle(r),
            ReadState::Reading(f) => Linger::Reading(f),
            ReadState::Done => return,
        };
        let buf = take(&mut self.rbuf);
        // Outside a runtime (a shard being torn down) there is nothing to
        // linger for: spawning would panic, so that case is let go.
        if !std::thread::panicking() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                monoio::spawn(linger(pending, buf));
            }));
        }
    }
}

enum Linger<R> {
    Idle(R),
    Reading(ReadFut<R>),
}

async fn linger<R: ReadIo + 'static>(pending: Linger<R>, mut buf: Vec<u8>) {
    let deadline = monoio::time::Instant::now() + LINGER;
    let mut seen = 0;
    let mut r = match pending {
        Linger::Idle(r) => r,
        Linger::Reading(f) => match monoio::time::timeout_at(deadline, f).await {
            Ok((r, Ok(n), b)) if n > 0 => {
                seen += n;
                buf = b;
                r
            }
            _ => return,
        },
    };
    while seen < LINGER_BYTES {
        buf.clear();
        match monoio::time::timeout_at(deadline, r.read_into(buf)).await {
            Ok((Ok(n), b)) if n > 0 => {
                seen += n;
                buf = b;
            }
            _ => break,
        }
    }
}

impl<R: ReadIo + 'static, W: WriteIo + 'static> AsyncRead for Compat<R, W> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.rpos < this.rbuf.len() {
                let n = (this.rbuf.len() - this.rpos).min(out.remaining());
                out.put_slice(&this.rbuf[this.rpos..this.rpos + n]);
                this.rpos += n;
                return Poll::Ready(Ok(()));
            }
            if let Some((_, tripped)) = &this.guard {
                if tripped.get().is_some() {
                    // The connection is being closed: nothing more is read.
                    return Poll::Pending;
                }
            }
            match &mut this.read {
                ReadState::Idle(_) => {
                    let ReadState::Idle(r) = std::mem::replace(&mut this.read, ReadState::Done)
                    else {
                        unreachable!()
                    };
                    let mut buf = take(&mut this.rbuf);
                    buf.clear();
                    if buf.capacity() == 0 {
                        buf.reserve(READ_BUF);
                    }
                    this.rpos = 0;
                    this.read = ReadState::Reading(Box::pin(async move {
                        let mut r = r;
                        let (res, b) = r.read_into(buf).await;
                        (r, res, b)
                    }));
                }
                ReadState::Reading(f) => match f.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready((r, res, b)) => {
                        this.rbuf = b;
                        this.rpos = 0;
                        match res {
                            Ok(0) => {
                                this.read = ReadState::Done;
                                this.rbuf.clear();
                                return Poll::Ready(Ok(()));
                            }
                            Ok(_) => {
                                this.read = ReadState::Idle(r);
                                if let Some((guard, tripped)) = &mut this.guard {
                                    if let Err((reason, at)) = guard.inspect(&this.rbuf) {
                                        // Deliver what came before the
                                        // offending frame, then nothing.
                                        tripped.set(Some(reason));
                                        this.rbuf.truncate(at);
                                        cx.waker().wake_by_ref();
                                    }
                                }
                            }
                            Err(e) => {
                                this.read = ReadState::Done;
                                this.rbuf.clear();
                                return Poll::Ready(Err(e));
                            }
                        }
                    }
                },
                ReadState::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl<R: ReadIo + 'static, W: WriteIo + 'static> AsyncWrite for Compat<R, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Make progress on what is in flight; when it is still going, queue
        // behind it while there is room.
        match this.poll_writes(cx) {
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {}
            Poll::Pending => {
                if this.queued.len() >= MAX_QUEUED {
                    return Poll::Pending;
                }
            }
        }
        let n = data
            .len()
            .min(MAX_QUEUED - this.queued.len().min(MAX_QUEUED));
        this.queued.extend_from_slice(&data[..n]);
        if let WriteState::Idle(_) = this.write {
            // Start the write now; its completion is driven by the next
            // write or flush.
            match this.poll_writes(cx) {
                Poll::Ready(Err(e)) => this.write_error = Some(e),
                Poll::Ready(Ok(())) | Poll::Pending => {}
            }
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_writes(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let live = matches!(this.write, WriteState::Writing(_) | WriteState::Idle(_));
            if live && this.write_pending() {
                match this.poll_writes(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            match &mut this.write {
                WriteState::Idle(_) => {
                    let WriteState::Idle(w) = std::mem::replace(&mut this.write, WriteState::Done)
                    else {
                        unreachable!()
                    };
                    this.write = WriteState::ShuttingDown(Box::pin(async move {
                        let mut w = w;
                        let r = w.shutdown().await;
                        (w, r)
                    }));
                }
                WriteState::ShuttingDown(f) => match f.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready((_w, r)) => {
                        this.write = WriteState::Done;
                        return Poll::Ready(r);
                    }
                },
                WriteState::Writing(_) => unreachable!("covered by write_pending"),
                WriteState::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}
