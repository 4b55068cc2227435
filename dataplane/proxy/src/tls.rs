//! TLS streams on monoio: rustls' buffered `ServerConnection` /
//! `ClientConnection` driven over the shard's own TCP socket with owned
//! buffers, on io_uring and epoll alike.
//!
//! A [`TlsStream`] owns the socket, the rustls connection and two buffers
//! that live as long as the connection: ciphertext read from the socket
//! (handed to rustls with `read_tls`) and ciphertext rustls produced
//! (`write_tls`) on its way to the socket. Plaintext is copied straight
//! between rustls and the caller's buffer: no allocation per read or write.
//!
//! [`TlsStream::into_split`] gives a read half and a write half for the L4
//! path, which copies both directions concurrently. The halves share the
//! rustls connection through an `Rc<RefCell<_>>`; neither holds the borrow
//! across an `.await`, so the borrows can never overlap (one shard thread,
//! cooperative scheduling).
//!
//! Peers closing without `close_notify` surface as `UnexpectedEof` read
//! errors (a possible truncation), not as a clean end of stream.

use std::{
    cell::RefCell,
    io::{self, BufRead, Write as _},
    mem::take,
    os::fd::{AsRawFd, RawFd},
    rc::Rc,
    sync::Arc,
};

use monoio::{
    buf::{IoBuf, IoBufMut},
    io::{
        AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
    },
    net::TcpStream,
};
use ringmesh_tls::SpiffeId;
use rustls::{
    pki_types::ServerName, ClientConfig, ClientConnection, Connection, ServerConfig,
    ServerConnection,
};

use crate::io::{ensure_spare, Io, ReadIo, WriteIo};

/// Capacity of the ciphertext read buffer: a whole TLS record (16 KiB of
/// data plus header and AEAD expansion) fits in one read.
pub const CIPHER_BUF: usize = 17 * 1024;

/// What the first bytes of a connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// A TLS handshake record (`0x16 0x03`).
    Tls,
    /// Anything else.
    Plaintext,
    /// Not enough bytes to tell.
    NeedMore,
}

/// Tell a TLS ClientHello from plaintext by its record header: content
/// type handshake (22) and major version 3. No HTTP/1 request starts with
/// byte 22 (a control character), so one byte decides for plaintext.
pub fn sniff(bytes: &[u8]) -> Sniffed {
    match bytes {
        [] | [0x16] => Sniffed::NeedMore,
        [0x16, 0x03, ..] => Sniffed::Tls,
        _ => Sniffed::Plaintext,
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the peer closed the connection during the handshake")]
    Eof,
    #[error("I/O error during the handshake: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Tls(rustls::Error),
}

/// Ciphertext received and not yet handed to rustls: `buf[pos..]`.
struct CipherIn {
    buf: Vec<u8>,
    pos: usize,
}

impl CipherIn {
    fn new(buf: Vec<u8>) -> Self {
        CipherIn { buf, pos: 0 }
    }

    fn pending(&self) -> bool {
        self.pos < self.buf.len()
    }

    /// Hand pending bytes to rustls and process them. Never called with
    /// nothing pending (an empty `read_tls` means end of stream to rustls).
    fn feed(&mut self, conn: &mut Connection) -> Result<(), HandshakeError> {
        debug_assert!(self.pending());
        let mut rest = &self.buf[self.pos..];
        let n = conn.read_tls(&mut rest)?;
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        conn.process_new_packets().map_err(HandshakeError::Tls)?;
        Ok(())
    }
}

/// Read ciphertext from the socket into `rx` (which has nothing pending).
/// Returns the byte count; 0 is the end of the stream.
async fn fill<R: AsyncReadRent>(io: &mut R, rx: &mut CipherIn) -> io::Result<usize> {
    debug_assert!(!rx.pending());
    let mut buf = take(&mut rx.buf);
    buf.clear();
    rx.pos = 0;
    if buf.capacity() < CIPHER_BUF {
        buf.reserve(CIPHER_BUF);
    }
    let cap = buf.capacity();
    let (r, slice) = io.read(buf.slice_mut(0..cap)).await;
    rx.buf = slice.into_inner();
    r
}

/// Tell rustls the socket reached its end.
fn signal_eof(conn: &mut Connection) {
    let _ = conn.read_tls(&mut io::empty());
    let _ = conn.process_new_packets();
}

/// What one look at the rustls connection gave.
enum Step {
    /// This many plaintext bytes were appended to the caller's buffer.
    Data(usize),
    /// The peer closed cleanly (`close_notify`).
    Eof,
    /// More ciphertext is needed from the socket.
    Need,
}

/// Deliver buffered plaintext into `dst`'s spare capacity (never past it),
/// feeding pending ciphertext to rustls as needed: as much as is already
/// here, so one read can return several records' worth.
fn step(conn: &mut Connection, rx: &mut CipherIn, dst: &mut Vec<u8>) -> io::Result<Step> {
    let mut total = 0;
    loop {
        loop {
            let spare = dst.capacity() - dst.len();
            if spare == 0 {
                return Ok(Step::Data(total));
            }
            let mut reader = conn.reader();
            match reader.fill_buf() {
                Ok([]) if total == 0 => return Ok(Step::Eof),
                Ok([]) => return Ok(Step::Data(total)),
                Ok(chunk) => {
                    let n = chunk.len().min(spare);
                    dst.extend_from_slice(&chunk[..n]);
                    reader.consume(n);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // Deliver what came before the error; it is sticky and
                // surfaces on the next read.
                Err(_) if total > 0 => return Ok(Step::Data(total)),
                Err(e) => return Err(e),
            }
        }
        if !rx.pending() {
            return Ok(if total > 0 {
                Step::Data(total)
            } else {
                Step::Need
            });
        }
        if let Err(e) = rx.feed(conn) {
            if total > 0 {
                return Ok(Step::Data(total));
            }
            return Err(into_io(e));
        }
    }
}

fn into_io(e: HandshakeError) -> io::Error {
    match e {
        HandshakeError::Io(e) => e,
        HandshakeError::Eof => io::ErrorKind::UnexpectedEof.into(),
        HandshakeError::Tls(e) => io::Error::new(io::ErrorKind::InvalidData, e),
    }
}

/// Move what rustls wants to send into `tx` and write it to `io`.
async fn flush<W: AsyncWriteRent>(
    io: &mut W,
    conn: &mut Connection,
    tx: &mut Vec<u8>,
) -> io::Result<()> {
    while conn.wants_write() {
        tx.clear();
        conn.write_tls(tx)?;
        let len = tx.len();
        let (r, slice) = io.write_all(take(tx).slice(0..len)).await;
        *tx = slice.into_inner();
        r?;
    }
    Ok(())
}

/// A TLS connection over a TCP socket (server or client side).
pub struct TlsStream {
    io: TcpStream,
    conn: Connection,
    rx: CipherIn,
    tx: Vec<u8>,
}

impl TlsStream {
    /// The server side of an accepted connection. `received` holds bytes
    /// already read from the socket (the sniffed ClientHello start); they
    /// are the first ciphertext rustls sees, and the vector becomes the
    /// connection's ciphertext buffer.
    pub fn server(
        io: TcpStream,
        config: Arc<ServerConfig>,
        received: Vec<u8>,
    ) -> Result<TlsStream, rustls::Error> {
        let conn = ServerConnection::new(config)?;
        Ok(TlsStream {
            io,
            conn: conn.into(),
            rx: CipherIn::new(received),
            tx: Vec::new(),
        })
    }

    /// The client side of a new connection to `server_name`.
    pub fn client(
        io: TcpStream,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> Result<TlsStream, rustls::Error> {
        let conn = ClientConnection::new(config, server_name)?;
        Ok(TlsStream {
            io,
            conn: conn.into(),
            rx: CipherIn::new(Vec::with_capacity(CIPHER_BUF)),
            tx: Vec::new(),
        })
    }

    /// Run the handshake to completion (wrap it in a timeout). Ciphertext
    /// that arrives with the peer's last handshake flight stays buffered
    /// for the first read.
    pub async fn handshake(&mut self) -> Result<(), HandshakeError> {
        loop {
            flush(&mut self.io, &mut self.conn, &mut self.tx).await?;
            if !self.conn.is_handshaking() {
                return Ok(());
            }
            if self.rx.pending() {
                if let Err(e) = self.rx.feed(&mut self.conn) {
                    // Send the alert saying why, if the peer still listens.
                    let _ = flush(&mut self.io, &mut self.conn, &mut self.tx).await;
                    return Err(e);
                }
                continue;
            }
            if fill(&mut self.io, &mut self.rx).await? == 0 {
                return Err(HandshakeError::Eof);
            }
        }
    }

    /// The peer's verified SPIFFE ID (after the handshake).
    pub fn peer_identity(&self) -> Option<SpiffeId> {
        ringmesh_tls::peer_identity(&self.conn)
    }

    /// The server name the client sent (server side, after the
    /// handshake).
    pub fn server_name(&self) -> Option<&str> {
        match &self.conn {
            Connection::Server(s) => s.server_name(),
            Connection::Client(_) => None,
        }
    }

    /// The application protocol agreed by ALPN (after the handshake).
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The peer's leaf certificate (after the handshake).
    pub fn peer_leaf(&self) -> Option<&[u8]> {
        self.conn.peer_certificates()?.first().map(|c| c.as_ref())
    }

    /// Whether the session was resumed rather than fully negotiated.
    pub fn resumed(&self) -> bool {
        matches!(
            self.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        )
    }

    /// The socket, for `peek`-style liveness checks.
    pub fn raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }

    /// Nothing received and unread, ciphertext or plaintext: an idle
    /// pooled connection must be silent.
    pub fn is_quiet(&mut self) -> bool {
        if self.rx.pending() {
            return false;
        }
        matches!(self.conn.reader().fill_buf(), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// A read half and a write half that can be used concurrently.
    pub fn into_split(self) -> (TlsReadHalf, TlsWriteHalf) {
        let conn = Rc::new(RefCell::new(self.conn));
        let (r, w) = self.io.into_split();
        (
            TlsReadHalf {
                io: r,
                conn: conn.clone(),
                rx: self.rx,
            },
            TlsWriteHalf {
                io: w,
                conn,
                tx: self.tx,
            },
        )
    }
}

impl ReadIo for TlsStream {
    async fn read_into(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        ensure_spare(&mut buf, 8 * 1024);
        loop {
            match step(&mut self.conn, &mut self.rx, &mut buf) {
                Ok(Step::Data(n)) => return (Ok(n), buf),
                Ok(Step::Eof) => return (Ok(0), buf),
                Ok(Step::Need) => {}
                Err(e) => {
                    // A fatal alert may be queued: tell the peer why.
                    let _ = flush(&mut self.io, &mut self.conn, &mut self.tx).await;
                    return (Err(e), buf);
                }
            }
            // Replies rustls queued while processing (key updates) go out
            // before we wait for more.
            if let Err(e) = flush(&mut self.io, &mut self.conn, &mut self.tx).await {
                return (Err(e), buf);
            }
            match fill(&mut self.io, &mut self.rx).await {
                Ok(0) => signal_eof(&mut self.conn),
                Ok(_) => {}
                Err(e) => return (Err(e), buf),
            }
        }
    }
}

/// Encrypt `data` into `conn` as far as its buffer allows; returns how
/// much was taken. Zero with nothing to flush means the connection can no
/// longer send (closed).
fn encrypt(conn: &mut Connection, data: &[u8]) -> io::Result<usize> {
    let n = conn.writer().write(data)?;
    if n == 0 && !data.is_empty() && !conn.wants_write() {
        return Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the TLS connection no longer accepts data",
        ));
    }
    Ok(n)
}

impl WriteIo for TlsStream {
    async fn write_range(&mut self, buf: Vec<u8>, end: usize) -> (io::Result<usize>, Vec<u8>) {
        let mut off = 0;
        while off < end {
            match encrypt(&mut self.conn, &buf[off..end]) {
                Ok(n) => off += n,
                Err(e) => return (Err(e), buf),
            }
            if let Err(e) = flush(&mut self.io, &mut self.conn, &mut self.tx).await {
                return (Err(e), buf);
            }
        }
        (Ok(end), buf)
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        let _ = flush(&mut self.io, &mut self.conn, &mut self.tx).await;
        AsyncWriteRent::shutdown(&mut self.io).await
    }
}

impl Io for TlsStream {
    const TLS: bool = true;
}

/// The reading half of a split [`TlsStream`].
pub struct TlsReadHalf {
    io: OwnedReadHalf<TcpStream>,
    conn: Rc<RefCell<Connection>>,
    rx: CipherIn,
}

/// The writing half of a split [`TlsStream`].
pub struct TlsWriteHalf {
    io: OwnedWriteHalf<TcpStream>,
    conn: Rc<RefCell<Connection>>,
    tx: Vec<u8>,
}

impl ReadIo for TlsReadHalf {
    async fn read_into(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        ensure_spare(&mut buf, 8 * 1024);
        loop {
            // The borrow ends before any await (see the module docs).
            let stepped = step(&mut self.conn.borrow_mut(), &mut self.rx, &mut buf);
            match stepped {
                Ok(Step::Data(n)) => return (Ok(n), buf),
                Ok(Step::Eof) => return (Ok(0), buf),
                Ok(Step::Need) => {}
                Err(e) => return (Err(e), buf),
            }
            // Whatever rustls queued in reply goes out with the write half's
            // next write or its shutdown.
            match fill(&mut self.io, &mut self.rx).await {
                Ok(0) => signal_eof(&mut self.conn.borrow_mut()),
                Ok(_) => {}
                Err(e) => return (Err(e), buf),
            }
        }
    }
}

impl TlsWriteHalf {
    /// Take what rustls wants to send (no await while borrowed), then
    /// write it.
    async fn flush(&mut self) -> io::Result<()> {
        loop {
            self.tx.clear();
            {
                let mut conn = self.conn.borrow_mut();
                if !conn.wants_write() {
                    return Ok(());
                }
                conn.write_tls(&mut self.tx)?;
            }
            let len = self.tx.len();
            let (r, slice) = self.io.write_all(take(&mut self.tx).slice(0..len)).await;
            self.tx = slice.into_inner();
            r?;
        }
    }
}

impl WriteIo for TlsWriteHalf {
    async fn write_range(&mut self, buf: Vec<u8>, end: usize) -> (io::Result<usize>, Vec<u8>) {
        let mut off = 0;
        while off < end {
            let taken = encrypt(&mut self.conn.borrow_mut(), &buf[off..end]);
            match taken {
                Ok(n) => off += n,
                Err(e) => return (Err(e), buf),
            }
            if let Err(e) = self.flush().await {
                return (Err(e), buf);
            }
        }
        (Ok(end), buf)
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.conn.borrow_mut().send_close_notify();
        let _ = self.flush().await;
        AsyncWriteRent::shutdown(&mut self.io).await
    }
}

#[cfg(test)]
mod tests;
