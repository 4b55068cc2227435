//! TCP listeners: bytes both ways, half-close in each direction, a refused
//! upstream, and a large full-duplex transfer.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::mpsc,
    thread,
    time::Duration,
};

use ringmesh_e2e::{on_both_drivers, pattern, refused_addr, Client, Driver, Proxy};
use serde_json::json;

/// What the in-test upstream does with each connection.
#[derive(Clone, Copy)]
enum Mode {
    /// Read to EOF, then answer `got N: <data>` and close.
    ReplyAfterEof,
    /// Send `banner`, shut down writing, then read to EOF and report what
    /// arrived on the channel.
    BannerThenRead,
    /// Echo everything back as it arrives; close after EOF.
    Echo,
}

/// A raw TCP upstream on 127.0.0.1:0, one thread per connection.
fn tcp_upstream(mode: Mode) -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let tx = tx.clone();
            thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                match mode {
                    Mode::ReplyAfterEof => {
                        let mut data = Vec::new();
                        let _ = s.read_to_end(&mut data);
                        let _ = write!(s, "got {}: ", data.len());
                        let _ = s.write_all(&data);
                        let _ = tx.send(data);
                    }
                    Mode::BannerThenRead => {
                        let _ = s.write_all(b"banner");
                        let _ = s.shutdown(Shutdown::Write);
                        let mut data = Vec::new();
                        let _ = s.read_to_end(&mut data);
                        let _ = tx.send(data);
                    }
                    Mode::Echo => {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if s.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = s.shutdown(Shutdown::Write);
                        let _ = tx.send(Vec::new());
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn tcp_proxy(driver: Driver, upstream: SocketAddr) -> Proxy {
    Proxy::start(
        driver,
        json!({
            "listeners": [{ "name": "tcp", "address": "auto", "protocol": "tcp", "cluster": "up" }],
            "clusters": [{ "name": "up", "connect_timeout": "1s", "endpoints": [{ "address": upstream.to_string() }] }]
        }),
    )
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// The client sends, shuts down writing, and still receives the reply the
/// upstream sends only after seeing EOF.
fn client_half_close(driver: Driver) {
    let (up, rx) = tcp_upstream(Mode::ReplyAfterEof);
    let proxy = tcp_proxy(driver, up);
    let mut s = connect(proxy.addr("tcp"));
    s.write_all(b"hello through tcp").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)
        .expect("reading the reply after our half-close");
    assert_eq!(String::from_utf8_lossy(&reply), "got 17: hello through tcp");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        b"hello through tcp"
    );
    proxy.wait_metric("ringmesh_downstream_cx_total", &[("listener", "tcp")], 1.0);
}

/// The upstream shuts down writing first; the client sees EOF, then still
/// sends, and the upstream receives it.
fn upstream_half_close(driver: Driver) {
    let (up, rx) = tcp_upstream(Mode::BannerThenRead);
    let proxy = tcp_proxy(driver, up);
    let mut s = connect(proxy.addr("tcp"));
    let mut banner = Vec::new();
    s.read_to_end(&mut banner)
        .expect("reading to the upstream's EOF");
    assert_eq!(banner, b"banner");
    s.write_all(b"sent after your EOF")
        .expect("writing after the upstream half-closed");
    s.shutdown(Shutdown::Write).unwrap();
    let got = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the upstream saw our EOF");
    assert_eq!(String::from_utf8_lossy(&got), "sent after your EOF");
}

/// 64 MiB each way at once through an echo upstream, checksummed.
fn full_duplex_64mib(driver: Driver) {
    let (up, _rx) = tcp_upstream(Mode::Echo);
    let proxy = tcp_proxy(driver, up);
    let mut s = connect(proxy.addr("tcp"));
    let len: u64 = 64 << 20;
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        pattern::for_each_slice(len, |b| w.write_all(b).unwrap());
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut crc = crc32fast::Hasher::new();
    let mut got = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf).expect("reading the echo");
        if n == 0 {
            break;
        }
        crc.update(&buf[..n]);
        got += n as u64;
    }
    writer.join().unwrap();
    assert_eq!(got, len);
    assert_eq!(crc.finalize(), pattern::crc32(len));
}

/// Nothing listens upstream: the client connection is closed promptly
/// without data, and the proxy keeps serving.
fn refused_upstream_closes_client(driver: Driver) {
    let proxy = tcp_proxy(driver, refused_addr());
    let mut c = Client::connect(proxy.addr("tcp"));
    let _ = c.send(b"anyone there?");
    let (bytes, closed) = c.read_until_close(Duration::from_secs(3));
    assert!(
        closed,
        "client connection left open although the upstream refused"
    );
    assert!(bytes.is_empty(), "unexpected bytes {bytes:?}");
}

/// The client vanishes (reset) mid-stream: the upstream connection is
/// closed too, promptly.
fn client_reset_closes_upstream(driver: Driver) {
    let (up, rx) = tcp_upstream(Mode::Echo);
    let proxy = tcp_proxy(driver, up);
    let mut s = connect(proxy.addr("tcp"));
    s.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    // SO_LINGER 0 makes close send a reset.
    socket_linger_zero(&s);
    drop(s);
    rx.recv_timeout(Duration::from_secs(3))
        .expect("the upstream connection outlived the client by 3s");
    proxy.wait_metric("ringmesh_downstream_cx_active", &[("listener", "tcp")], 0.0);
}

fn socket_linger_zero(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `size_of::<linger>()` bytes from a valid,
    // live `linger` value; the fd is owned by `s` for the whole call.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(s),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER)");
}

/// Many short connections in a row, each with its own upstream connection.
fn sequential_connections(driver: Driver) {
    let (up, rx) = tcp_upstream(Mode::ReplyAfterEof);
    let proxy = tcp_proxy(driver, up);
    for i in 0..50 {
        let mut s = connect(proxy.addr("tcp"));
        let msg = format!("msg {i}");
        s.write_all(msg.as_bytes()).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, format!("got {}: {msg}", msg.len()));
    }
    assert_eq!(rx.try_iter().count(), 50);
    proxy.wait_metric("ringmesh_downstream_cx_total", &[("listener", "tcp")], 50.0);
    proxy.wait_metric("ringmesh_downstream_cx_active", &[("listener", "tcp")], 0.0);
}

on_both_drivers!(
    client_half_close,
    upstream_half_close,
    full_duplex_64mib,
    refused_upstream_closes_client,
    client_reset_closes_upstream,
    sequential_connections,
);
