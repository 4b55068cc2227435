//! `SO_ORIGINAL_DST`: where a redirected connection was going.
//!
//! `REDIRECT` rewrites a connection's destination to the proxy's capture
//! port; conntrack remembers the original tuple, and
//! `getsockopt(SOL_IP, SO_ORIGINAL_DST)` (IPv4) or
//! `getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)` (IPv6) on the accepted
//! socket returns the original destination.
//!
//! An IPv6 socket carrying an IPv4 connection (a `[::]` listener accepting
//! `::ffff:a.b.c.d`) is an IPv4 conntrack entry: it is asked with the IPv4
//! option, which the kernel routes through the IPv4 path for such sockets.
//!
//! For a connection conntrack tracks but that no NAT rule rewrote, the
//! kernel answers with the destination the socket already has (the
//! listener's own address): a proxy that sees its own capture port as the
//! original destination must not connect to it (it would loop).
#![allow(unsafe_code)]

use std::{
    io, mem,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::{AsRawFd, RawFd},
};

/// The destination a redirected TCP connection was originally sent to.
///
/// Errors: `NotFound` when conntrack has no entry for the connection (it
/// was not redirected, or no netfilter rule made conntrack track this
/// network namespace), or the OS error otherwise (e.g. `ENOTSOCK`).
pub fn original_dst(fd: &impl AsRawFd) -> io::Result<SocketAddr> {
    let fd = fd.as_raw_fd();
    match local_addr(fd)? {
        SocketAddr::V4(_) => ipv4(fd),
        SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_some() => ipv4(fd),
        SocketAddr::V6(_) => ipv6(fd),
    }
}

fn not_found(e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ENOENT) {
        io::Error::new(
            io::ErrorKind::NotFound,
            "SO_ORIGINAL_DST: conntrack has no entry for this connection (it was not \
             redirected by iptables, or nothing enabled conntrack in this network namespace)",
        )
    } else {
        e
    }
}

fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data for which all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `storage`, which outlives the
    // call; the kernel writes at most `len` bytes and updates `len`.
    let rc = unsafe {
        libc::getsockname(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    sockaddr_to_std(&storage, len)
}

fn ipv4(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_in is plain data for which all-zero is valid.
    let mut sin: libc::sockaddr_in = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `sin`, which outlives the
    // call; SO_ORIGINAL_DST writes a sockaddr_in of at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_IP,
            libc::SO_ORIGINAL_DST,
            (&mut sin as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(not_found(io::Error::last_os_error()));
    }
    Ok(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
        u16::from_be(sin.sin_port),
    )))
}

fn ipv6(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_in6 is plain data for which all-zero is valid.
    let mut sin6: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `sin6`, which outlives the
    // call; IP6T_SO_ORIGINAL_DST writes a sockaddr_in6 of at most `len`
    // bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_IPV6,
            libc::IP6T_SO_ORIGINAL_DST,
            (&mut sin6 as *mut libc::sockaddr_in6).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(not_found(io::Error::last_os_error()));
    }
    Ok(SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::from(sin6.sin6_addr.s6_addr),
        u16::from_be(sin6.sin6_port),
        u32::from_be(sin6.sin6_flowinfo),
        sin6.sin6_scope_id,
    )))
}

fn sockaddr_to_std(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> io::Result<SocketAddr> {
    let len = len as usize;
    match i32::from(storage.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family is AF_INET and the kernel wrote a whole
            // sockaddr_in; sockaddr_storage is large and aligned enough for it.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family is AF_INET6 and the kernel wrote a whole
            // sockaddr_in6; sockaddr_storage is large and aligned enough for it.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "SO_ORIGINAL_DST: not an IPv4 or IPv6 socket",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        fs::File,
        io,
        net::{TcpListener, TcpStream},
    };

    use super::original_dst;

    #[test]
    fn not_a_socket() {
        let f = File::open("/dev/null").unwrap();
        let e = original_dst(&f).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTSOCK), "{e}");
    }

    /// Without a redirect, the kernel has either no entry (conntrack idle
    /// in this namespace) or the socket's own destination.
    #[test]
    fn unredirected_connection() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        match original_dst(&s) {
            Ok(a) => assert_eq!(a, s.local_addr().unwrap()),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}"),
        }
    }

    #[test]
    fn unredirected_ipv6_connection() {
        let Ok(l) = TcpListener::bind("[::1]:0") else {
            // No IPv6 loopback on this host: nothing to ask.
            return;
        };
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        match original_dst(&s) {
            Ok(a) => assert_eq!(a, s.local_addr().unwrap()),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}"),
        }
    }
}
