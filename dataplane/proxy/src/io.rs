//! The stream operations the proxy needs, over plaintext TCP and over TLS.
//!
//! The HTTP/1 and TCP paths are generic over these traits, so each stream
//! type gets its own compiled copy: a plaintext connection runs exactly the
//! monoio calls it ran before TLS existed (no dynamic dispatch, no extra
//! buffer), and TLS streams ([`crate::tls`]) slot in beside it.
//!
//! Buffers are owned `Vec<u8>`s moved into the operation and handed back
//! (monoio's rent-style I/O), so a connection reuses the same buffers for
//! its whole life.

use std::{future::Future, io};

use monoio::{
    buf::{IoBuf, IoBufMut},
    io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf},
    net::TcpStream,
};

/// Smallest spare room a read is given; a buffer with less is grown first.
pub const MIN_READ_SPARE: usize = 1024;

/// Make room for a read: grow `buf` (doubling, at least `min_grow`) when
/// fewer than [`MIN_READ_SPARE`] bytes are free.
#[inline]
pub fn ensure_spare(buf: &mut Vec<u8>, min_grow: usize) {
    if buf.capacity() - buf.len() < MIN_READ_SPARE {
        buf.reserve(buf.capacity().max(min_grow));
    }
}

/// Reading side of a stream.
pub trait ReadIo {
    /// Read at least one byte, appending to `buf` (after [`ensure_spare`]
    /// with 8 KiB); `Ok(0)` is the end of the stream.
    fn read_into(&mut self, buf: Vec<u8>) -> impl Future<Output = (io::Result<usize>, Vec<u8>)>;
}

/// Writing side of a stream.
pub trait WriteIo {
    /// Write all of `buf[..end]`.
    fn write_range(
        &mut self,
        buf: Vec<u8>,
        end: usize,
    ) -> impl Future<Output = (io::Result<usize>, Vec<u8>)>;

    /// Close the writing direction (TLS: `close_notify`, then TCP FIN).
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>>;
}

/// A whole connection.
pub trait Io: ReadIo + WriteIo {
    /// Whether the connection is TLS (the scheme the request arrived with).
    const TLS: bool;
}

const INITIAL_GROW: usize = 8 * 1024;

async fn read_append<R: AsyncReadRent>(
    s: &mut R,
    mut buf: Vec<u8>,
) -> (io::Result<usize>, Vec<u8>) {
    ensure_spare(&mut buf, INITIAL_GROW);
    let len = buf.len();
    let cap = buf.capacity();
    let (r, slice) = s.read(buf.slice_mut(len..cap)).await;
    (r, slice.into_inner())
}

async fn write_prefix<W: AsyncWriteRent>(
    s: &mut W,
    buf: Vec<u8>,
    end: usize,
) -> (io::Result<usize>, Vec<u8>) {
    let (r, slice) = s.write_all(buf.slice(0..end)).await;
    (r, slice.into_inner())
}

impl ReadIo for TcpStream {
    #[inline]
    fn read_into(&mut self, buf: Vec<u8>) -> impl Future<Output = (io::Result<usize>, Vec<u8>)> {
        read_append(self, buf)
    }
}

impl WriteIo for TcpStream {
    #[inline]
    fn write_range(
        &mut self,
        buf: Vec<u8>,
        end: usize,
    ) -> impl Future<Output = (io::Result<usize>, Vec<u8>)> {
        write_prefix(self, buf, end)
    }

    #[inline]
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> {
        AsyncWriteRent::shutdown(self)
    }
}

impl Io for TcpStream {
    const TLS: bool = false;
}

impl ReadIo for OwnedReadHalf<TcpStream> {
    #[inline]
    fn read_into(&mut self, buf: Vec<u8>) -> impl Future<Output = (io::Result<usize>, Vec<u8>)> {
        read_append(self, buf)
    }
}

impl WriteIo for OwnedWriteHalf<TcpStream> {
    #[inline]
    fn write_range(
        &mut self,
        buf: Vec<u8>,
        end: usize,
    ) -> impl Future<Output = (io::Result<usize>, Vec<u8>)> {
        write_prefix(self, buf, end)
    }

    #[inline]
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> {
        AsyncWriteRent::shutdown(self)
    }
}

/// Copy `r` into `w` until `r` ends, then close `w`'s writing direction
/// (half-close preserved). Returns the bytes copied, or the error that
/// stopped the copy (`w` is shut down either way).
pub async fn pump<R: ReadIo, W: WriteIo>(
    r: &mut R,
    w: &mut W,
    mut buf: Vec<u8>,
) -> io::Result<u64> {
    let mut total = 0u64;
    let result = loop {
        buf.clear();
        let (res, b) = r.read_into(buf).await;
        buf = b;
        match res {
            Ok(0) => break Ok(total),
            Ok(n) => {
                let (res, b) = w.write_range(buf, n).await;
                buf = b;
                if let Err(e) = res {
                    break Err(e);
                }
                total += n as u64;
            }
            Err(e) => break Err(e),
        }
    };
    let _ = w.shutdown().await;
    result
}
