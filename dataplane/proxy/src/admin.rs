//! The admin server, on the control thread (never on a shard): readiness,
//! Prometheus metrics, the live configuration, clusters, the certificate
//! in service.
//!
//! Loopback by default. One request per connection; small and bounded.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::shared::Shared;

const MAX_REQUEST: usize = 16 * 1024;

pub async fn serve(shared: Arc<Shared>, addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(address = %listener.local_addr()?, "admin listening");
    loop {
        let (s, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle(shared, s)).await;
        });
    }
}

async fn handle(shared: Arc<Shared>, mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let (method, path) = loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("/").to_string(),
                );
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => continue,
            _ => return respond(&mut s, 400, "text/plain", b"bad request\n").await,
        }
    };
    let path_only = path.split('?').next().unwrap_or("/");
    match (method.as_str(), path_only) {
        ("GET", "/ready") | ("GET", "/healthz/ready") => {
            if shared.is_draining() {
                respond(&mut s, 503, "text/plain", b"DRAINING\n").await
            } else if shared.is_ready() {
                respond(&mut s, 200, "text/plain", b"LIVE\n").await
            } else {
                respond(&mut s, 503, "text/plain", b"PRE_INITIALIZING\n").await
            }
        }
        ("GET", "/stats/prometheus") | ("GET", "/metrics") | ("GET", "/stats") => {
            let text = crate::stats::render(&shared);
            respond(&mut s, 200, "text/plain; version=0.0.4", text.as_bytes()).await
        }
        ("GET", "/config_dump") => {
            let snap = shared.snapshot.load();
            let body = serde_json::json!({
                "version": format!("{:016x}", snap.version),
                "config": &*snap.source,
            });
            let text = serde_json::to_vec_pretty(&body).unwrap_or_default();
            respond(&mut s, 200, "application/json", &text).await
        }
        ("GET", "/certs") => {
            // Envoy's /certs, in this proxy's terms: the certificate being
            // served (none yet, or no identity configured).
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let body = match shared.identity.current() {
                Some(c) => serde_json::json!({
                    "certificate": &*c,
                    "expires_in_seconds": c.not_after.saturating_sub(now),
                }),
                None => serde_json::json!({
                    "certificate": null,
                    "identity_configured": shared.identity.configured,
                }),
            };
            let text = serde_json::to_vec_pretty(&body).unwrap_or_default();
            respond(&mut s, 200, "application/json", &text).await
        }
        ("GET", "/clusters") => {
            let snap = shared.snapshot.load();
            let clusters: Vec<_> = snap
                .clusters
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "name": &*c.name,
                        "connect_timeout_ms": c.connect_timeout.as_millis() as u64,
                        "lb_policy": format!("{:?}", c.lb_policy),
                        "tls": &c.tls,
                        "endpoints": c.endpoints.iter().map(|e| serde_json::json!({
                            "address": e.address.to_string(),
                            "weight": e.weight,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let text = serde_json::to_vec_pretty(&serde_json::json!({ "clusters": clusters }))
                .unwrap_or_default();
            respond(&mut s, 200, "application/json", &text).await
        }
        ("GET", "/") => {
            respond(
                &mut s,
                200,
                "text/plain",
                b"ringmesh-proxy admin: /ready /stats/prometheus /config_dump /clusters /certs\n",
            )
            .await
        }
        _ => respond(&mut s, 404, "text/plain", b"not found\n").await,
    }
}

async fn respond(s: &mut TcpStream, status: u16, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    let head = format!("HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    s.shutdown().await
}
