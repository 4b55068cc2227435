//! TLS streams over real loopback sockets, on io_uring and on epoll, with
//! SVIDs from the mesh CA.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use monoio::net::{TcpListener, TcpStream};
use ringmesh_ca::{CaOptions, CaStore};
use ringmesh_tls::{
    generate_key_and_csr, CertifiedKeyResolver, SharedTrustBundle, SpiffeId, Svid, SvidError,
};

use super::*;
use crate::io::{pump, ReadIo, WriteIo};

const TD: &str = "cluster.local";

struct Mesh {
    _dir: tempfile::TempDir,
    ca: CaStore,
    bundle: SharedTrustBundle,
}

impl Mesh {
    fn new() -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        let ca = CaStore::open(dir.path(), CaOptions::new(TD)).unwrap();
        let bundle = SharedTrustBundle::new(ca.trust_bundle().clone());
        Mesh {
            _dir: dir,
            ca,
            bundle,
        }
    }

    fn resolver(&self, sa: &str) -> Arc<CertifiedKeyResolver> {
        let id = SpiffeId::new(TD, "default", sa).unwrap();
        let req = generate_key_and_csr(&id).unwrap();
        let issued = self
            .ca
            .sign(&req.csr_pem, &id, Duration::from_secs(3600))
            .unwrap();
        let svid = Svid::from_pem(
            issued.cert_chain_pem.as_bytes(),
            req.key_pem.as_bytes(),
            TD,
            &ringmesh_tls::provider(),
        )
        .unwrap();
        Arc::new(CertifiedKeyResolver::from_svid(&svid))
    }

    fn server(&self, sa: &str) -> Arc<ServerConfig> {
        ringmesh_tls::server_config(
            self.resolver(sa),
            self.bundle.clone(),
            TD,
            &[ringmesh_tls::ALPN_HTTP11],
        )
        .unwrap()
    }

    fn client(&self, sa: &str, allowed: &[&str]) -> Arc<ClientConfig> {
        let allowed = allowed
            .iter()
            .map(|a| SpiffeId::new(TD, "default", *a).unwrap())
            .collect();
        ringmesh_tls::client_config(
            self.resolver(sa),
            self.bundle.clone(),
            TD,
            allowed,
            &[ringmesh_tls::ALPN_HTTP11],
        )
        .unwrap()
    }
}

/// Run `f` on an io_uring runtime and on an epoll runtime.
fn on_both_drivers<F, Fut>(f: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut uring = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime (is io_uring blocked here?)");
    uring.block_on(f());
    let mut epoll = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    epoll.block_on(f());
}

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

fn name() -> ServerName<'static> {
    ServerName::try_from("reviews.default.svc").unwrap()
}

/// Read exactly `n` bytes (or to the end of the stream).
async fn read_n<S: ReadIo>(s: &mut S, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n.min(1 << 22));
    let mut buf = Vec::with_capacity(8192);
    while out.len() < n {
        buf.clear();
        let (r, b) = s.read_into(buf).await;
        buf = b;
        match r {
            Ok(0) => break,
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e) => panic!("read failed after {} bytes: {e}", out.len()),
        }
    }
    out
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn sniffing_the_first_bytes() {
    assert_eq!(sniff(b""), Sniffed::NeedMore);
    assert_eq!(sniff(&[0x16]), Sniffed::NeedMore);
    assert_eq!(sniff(&[0x16, 0x03, 0x01]), Sniffed::Tls);
    assert_eq!(sniff(&[0x16, 0x03]), Sniffed::Tls);
    assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Sniffed::Plaintext);
    assert_eq!(sniff(&[0x16, 0x02]), Sniffed::Plaintext);
    assert_eq!(sniff(b"P"), Sniffed::Plaintext);
    // An HTTP/2 preface is plaintext too.
    assert_eq!(sniff(b"PRI * HTTP/2.0"), Sniffed::Plaintext);
}

#[test]
fn data_both_ways_identities_and_close_notify() {
    let mesh = Mesh::new();
    let server_cfg = mesh.server("reviews");
    let client_cfg = mesh.client("productpage", &["reviews"]);
    on_both_drivers(|| {
        let (server_cfg, client_cfg) = (server_cfg.clone(), client_cfg.clone());
        async move {
            let (l, addr) = listener();
            let server = monoio::spawn(async move {
                let (s, _) = l.accept().await.unwrap();
                let mut t = TlsStream::server(s, server_cfg, Vec::new()).unwrap();
                t.handshake().await.unwrap();
                let peer = t.peer_identity().unwrap().to_string();
                // Echo 1 MiB back in the chunks it arrives in.
                let got = read_n(&mut t, 1 << 20).await;
                let n = got.len();
                let (r, _) = t.write_range(got, n).await;
                r.unwrap();
                // The client closes with close_notify: a clean end.
                let rest = read_n(&mut t, 1).await;
                assert!(rest.is_empty());
                WriteIo::shutdown(&mut t).await.unwrap();
                peer
            });
            let s = TcpStream::connect_addr(addr).await.unwrap();
            let mut t = TlsStream::client(s, client_cfg, name()).unwrap();
            t.handshake().await.unwrap();
            assert_eq!(
                t.peer_identity().unwrap().to_string(),
                "spiffe://cluster.local/ns/default/sa/reviews"
            );
            assert!(crate::tls::TlsStream::peer_leaf(&t).is_some());
            let data = pattern(1 << 20);
            let n = data.len();
            let (r, _) = t.write_range(data.clone(), n).await;
            r.unwrap();
            assert_eq!(read_n(&mut t, n).await, data);
            WriteIo::shutdown(&mut t).await.unwrap();
            assert!(read_n(&mut t, 1).await.is_empty());
            assert_eq!(
                server.await,
                "spiffe://cluster.local/ns/default/sa/productpage"
            );
        }
    });
}

#[test]
fn sniffed_bytes_are_the_start_of_the_handshake() {
    let mesh = Mesh::new();
    let server_cfg = mesh.server("reviews");
    let client_cfg = mesh.client("productpage", &[]);
    on_both_drivers(|| {
        let (server_cfg, client_cfg) = (server_cfg.clone(), client_cfg.clone());
        async move {
            let (l, addr) = listener();
            let server = monoio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                // What the inbound listener does: read, sniff, hand over.
                let (r, first) = s.read_into(Vec::with_capacity(8192)).await;
                assert!(r.unwrap() > 0);
                assert_eq!(sniff(&first), Sniffed::Tls);
                let mut t = TlsStream::server(s, server_cfg, first).unwrap();
                t.handshake().await.unwrap();
                let got = read_n(&mut t, 5).await;
                let (r, _) = t.write_range(b"pong!".to_vec(), 5).await;
                r.unwrap();
                got
            });
            let s = TcpStream::connect_addr(addr).await.unwrap();
            let mut t = TlsStream::client(s, client_cfg, name()).unwrap();
            t.handshake().await.unwrap();
            let (r, _) = t.write_range(b"ping!".to_vec(), 5).await;
            r.unwrap();
            assert_eq!(read_n(&mut t, 5).await, b"pong!");
            assert_eq!(server.await, b"ping!");
        }
    });
}

#[test]
fn split_halves_copy_both_ways_with_half_close() {
    let mesh = Mesh::new();
    let server_cfg = mesh.server("reviews");
    let client_cfg = mesh.client("productpage", &["reviews"]);
    on_both_drivers(|| {
        let (server_cfg, client_cfg) = (server_cfg.clone(), client_cfg.clone());
        async move {
            let (l, addr) = listener();
            // An echo server on split halves: what the L4 path does.
            let server = monoio::spawn(async move {
                let (s, _) = l.accept().await.unwrap();
                let mut t = TlsStream::server(s, server_cfg, Vec::new()).unwrap();
                t.handshake().await.unwrap();
                let (mut r, mut w) = t.into_split();
                pump(&mut r, &mut w, Vec::with_capacity(16 * 1024))
                    .await
                    .unwrap()
            });
            let s = TcpStream::connect_addr(addr).await.unwrap();
            let mut t = TlsStream::client(s, client_cfg, name()).unwrap();
            t.handshake().await.unwrap();
            let (mut r, mut w) = t.into_split();
            let data = pattern(300_000);
            let sent = data.clone();
            let (echoed, _) = monoio::join!(read_n(&mut r, usize::MAX), async move {
                let n = sent.len();
                let (res, _) = w.write_range(sent, n).await;
                res.unwrap();
                // Half-close: the echo still comes back, then the end.
                w.shutdown().await.unwrap();
            });
            assert_eq!(echoed.len(), data.len());
            assert!(echoed == data);
            assert_eq!(server.await, data.len() as u64);
        }
    });
}

#[test]
fn wrong_server_identity_fails_the_client_handshake() {
    let mesh = Mesh::new();
    let server_cfg = mesh.server("impostor");
    let client_cfg = mesh.client("productpage", &["reviews"]);
    on_both_drivers(|| {
        let (server_cfg, client_cfg) = (server_cfg.clone(), client_cfg.clone());
        async move {
            let (l, addr) = listener();
            let server = monoio::spawn(async move {
                let (s, _) = l.accept().await.unwrap();
                let mut t = TlsStream::server(s, server_cfg, Vec::new()).unwrap();
                t.handshake().await.is_err()
            });
            let s = TcpStream::connect_addr(addr).await.unwrap();
            let mut t = TlsStream::client(s, client_cfg, name()).unwrap();
            let err = t.handshake().await.unwrap_err();
            let HandshakeError::Tls(e) = &err else {
                panic!("{err}")
            };
            assert!(
                matches!(
                    ringmesh_tls::svid_error(e),
                    Some(SvidError::NotAllowed { .. })
                ),
                "{e}"
            );
            // The client's alert ends the server's handshake too.
            assert!(server.await);
        }
    });
}

#[test]
fn plaintext_is_not_a_handshake() {
    let mesh = Mesh::new();
    let server_cfg = mesh.server("reviews");
    on_both_drivers(|| {
        let server_cfg = server_cfg.clone();
        async move {
            let (l, addr) = listener();
            let server = monoio::spawn(async move {
                let (s, _) = l.accept().await.unwrap();
                let mut t = TlsStream::server(s, server_cfg, Vec::new()).unwrap();
                t.handshake().await
            });
            let mut s = TcpStream::connect_addr(addr).await.unwrap();
            let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
            let (r, _) = s.write_range(req, 27).await;
            r.unwrap();
            assert!(matches!(server.await, Err(HandshakeError::Tls(_))));
        }
    });
}

#[test]
fn sessions_resume_per_client_config() {
    let mesh = Mesh::new();
    on_both_drivers(|| {
        // Fresh session caches for each driver's run.
        let server_cfg = mesh.server("reviews");
        let client_cfg = mesh.client("productpage", &["reviews"]);
        async move {
            let (l, addr) = listener();
            let server = monoio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..2 {
                    let (s, _) = l.accept().await.unwrap();
                    let mut t = TlsStream::server(s, server_cfg.clone(), Vec::new()).unwrap();
                    t.handshake().await.unwrap();
                    // The resumed session still names the client.
                    ids.push(t.peer_identity().map(|i| i.to_string()));
                    let got = read_n(&mut t, 1).await;
                    let (r, _) = t.write_range(got, 1).await;
                    r.unwrap();
                }
                ids
            });
            let mut resumed = Vec::new();
            for _ in 0..2 {
                let s = TcpStream::connect_addr(addr).await.unwrap();
                let mut t = TlsStream::client(s, client_cfg.clone(), name()).unwrap();
                t.handshake().await.unwrap();
                let (r, _) = t.write_range(vec![7], 1).await;
                r.unwrap();
                // Reading the reply also takes in the session ticket.
                assert_eq!(read_n(&mut t, 1).await, [7]);
                resumed.push(t.resumed());
            }
            assert_eq!(resumed, [false, true]);
            let want = Some("spiffe://cluster.local/ns/default/sa/productpage".to_owned());
            assert_eq!(server.await, [want.clone(), want]);
        }
    });
}
