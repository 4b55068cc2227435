//! `ringmesh-demo-app`: the sample application of the demo, one binary
//! playing every service (frontend, reviews v1/v2, ratings). Each
//! instance answers any `GET` with JSON naming itself; with `--call` it
//! first calls that service through its sidecar's outbound HTTP proxy
//! (`--via`) and nests the answer, so one request shows the whole path it
//! took. It forwards `end-user` (the header the canary route matches on)
//! and the tracing headers, as Istio's sample applications do.
//!
//! ```text
//! GET / ─▶ frontend ─(via 127.0.0.100:15001, Host reviews:9080)─▶ reviews v2 ─(via …:15001)─▶ ratings
//! ◀─ {"name":"frontend","version":"v1","downstream":{"name":"reviews","version":"v2","downstream":{"name":"ratings",…}}}
//! ```
//!
//! Responses carry `x-backend: NAME-VERSION`. A failed downstream call is
//! answered with 502 and the reason, never hidden. Threads: one accept
//! loop, one thread per connection (bounded), each with its own
//! keep-alive connection to the sidecar.

use std::{
    io::Write,
    net::{SocketAddr, TcpListener},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use serde_json::{json, Value};

use crate::http::{Client, Request, ServerConn};

/// Headers passed on to the downstream call.
const FORWARDED: &[&str] = &[
    "end-user",
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
];

/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 512;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "ringmesh-demo-app",
    disable_version_flag = true,
    about = "The sample service of `ringmesh demo`: answers JSON naming itself, optionally after \
             calling another service through its sidecar",
    after_help = "Examples:\n  ringmesh-demo-app --name ratings --listen 127.0.0.1:0\n  \
                  ringmesh-demo-app --name reviews --version v2 --listen 127.0.0.1:0 --call \
                  ratings:9080 --via 127.0.0.102:15001\n\nPrints `LISTENING <addr>` on stdout \
                  once it accepts connections."
)]
pub struct AppArgs {
    /// The service this instance plays (frontend, reviews, ratings, ...).
    #[arg(long)]
    pub name: String,
    /// Its version label (`x-backend: NAME-VERSION`).
    #[arg(long, default_value = "v1")]
    pub version: String,
    /// Where to listen (`IP:PORT`; port 0 picks one).
    #[arg(long, value_name = "IP:PORT")]
    pub listen: SocketAddr,
    /// A service to call for every request, as `host:port` (the Host header).
    #[arg(long, value_name = "HOST:PORT", requires = "via")]
    pub call: Option<String>,
    /// The sidecar's outbound HTTP proxy the call goes through.
    #[arg(long, value_name = "IP:PORT", requires = "call")]
    pub via: Option<SocketAddr>,
    /// Time limit of the downstream call.
    #[arg(long, default_value = "5000", value_name = "MS")]
    pub timeout_ms: u64,
}

struct App {
    name: String,
    version: String,
    backend: String,
    downstream: Option<(String, SocketAddr)>,
    timeout: Duration,
}

/// Run the app; returns the exit code (only start-up can fail).
pub fn main(args: AppArgs) -> i32 {
    let listener = match TcpListener::bind(args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "ringmesh-demo-app {}: cannot listen on {}: {e}",
                args.name, args.listen
            );
            return 1;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ringmesh-demo-app {}: {e}", args.name);
            return 1;
        }
    };
    let app = Arc::new(App {
        backend: format!("{}-{}", args.name, args.version),
        name: args.name,
        version: args.version,
        downstream: args.call.zip(args.via),
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
    });
    let mut out = std::io::stdout();
    if writeln!(out, "LISTENING {addr}")
        .and_then(|()| out.flush())
        .is_err()
    {
        // Whoever started us is gone.
        return 1;
    }
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            continue; // dropped: closed
        }
        active.fetch_add(1, Ordering::Relaxed);
        let (app, mine) = (app.clone(), active.clone());
        let spawned = thread::Builder::new().name("conn".into()).spawn(move || {
            serve(&app, ServerConn::new(stream, Duration::from_secs(60)));
            mine.fetch_sub(1, Ordering::Relaxed);
        });
        if spawned.is_err() {
            // Out of threads: the connection was dropped with the closure.
            active.fetch_sub(1, Ordering::Relaxed);
        }
    }
    0
}

fn serve(app: &App, mut conn: ServerConn) {
    let mut downstream = app
        .downstream
        .as_ref()
        .map(|(_, via)| Client::new(*via, app.timeout));
    loop {
        let req = match conn.next_request() {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(why) => {
                let body = json!({ "name": app.name, "error": format!("bad request: {why}") });
                let _ = conn.respond(
                    400,
                    &json_headers(app),
                    body.to_string().as_bytes(),
                    true,
                    false,
                );
                return;
            }
        };
        let (status, body) = answer(app, &req, downstream.as_mut());
        if conn
            .respond(
                status,
                &json_headers(app),
                body.to_string().as_bytes(),
                req.close,
                req.method == "HEAD",
            )
            .is_err()
            || req.close
        {
            return;
        }
    }
}

fn json_headers(app: &App) -> [(&str, &str); 2] {
    [
        ("content-type", "application/json"),
        ("x-backend", app.backend.as_str()),
    ]
}

/// The answer to one request: (status, JSON body).
fn answer(app: &App, req: &Request, downstream: Option<&mut Client>) -> (u16, Value) {
    let mut me = json!({
        "name": app.name,
        "version": app.version,
        "path": req.path,
    });
    if let Some(user) = req.header("end-user") {
        me["end_user"] = Value::String(user.to_owned());
    }
    if req.method != "GET" && req.method != "HEAD" {
        me["error"] = Value::String(format!("method {} not supported", req.method));
        return (405, me);
    }
    let (Some((host, via)), Some(client)) = (&app.downstream, downstream) else {
        return (200, me);
    };
    let forwarded: Vec<(&str, &str)> = FORWARDED
        .iter()
        .filter_map(|name| req.header(name).map(|v| (*name, v)))
        .collect();
    match client.get(host, "/", &forwarded) {
        Ok(r) if r.status == 200 => {
            me["downstream"] = serde_json::from_slice(&r.body)
                .unwrap_or_else(|_| Value::String(r.text().chars().take(200).collect()));
            (200, me)
        }
        Ok(r) => {
            me["error"] = Value::String(format!(
                "{host} via {via} answered {}: {}",
                r.status,
                r.text().trim().chars().take(200).collect::<String>()
            ));
            me["downstream_status"] = Value::from(r.status);
            (502, me)
        }
        Err(e) => {
            me["error"] = Value::String(format!("calling {host} via {via}: {e}"));
            (502, me)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// Serve `app` on a loopback port, one thread per connection.
    fn serve_on_loopback(app: App) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let app = Arc::new(app);
        thread::spawn(move || {
            for s in l.incoming().map_while(Result::ok) {
                let app = app.clone();
                thread::spawn(move || serve(&app, ServerConn::new(s, Duration::from_secs(5))));
            }
        });
        addr
    }

    fn app(name: &str, version: &str, downstream: Option<(&str, SocketAddr)>) -> App {
        App {
            name: name.into(),
            version: version.into(),
            backend: format!("{name}-{version}"),
            downstream: downstream.map(|(h, a)| (h.to_owned(), a)),
            timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn answers_name_themselves_and_nest_the_downstream_answer() {
        let ratings = serve_on_loopback(app("ratings", "v1", None));
        // No sidecar here: `--via` points straight at ratings.
        let reviews = serve_on_loopback(app("reviews", "v2", Some(("ratings:9080", ratings))));
        let mut c = Client::new(reviews, Duration::from_secs(2));
        let r = c
            .get(
                "reviews:9080",
                "/x",
                &[("end-user", "jason"), ("x-other", "1")],
            )
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-backend"), Some("reviews-v2"));
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["name"], "reviews");
        assert_eq!(v["end_user"], "jason");
        assert_eq!(v["downstream"]["name"], "ratings");
        // end-user went downstream; other headers did not matter.
        assert_eq!(v["downstream"]["end_user"], "jason");
        // Keep-alive: a second request on the same connection.
        let r = c.get("reviews:9080", "/", &[]).unwrap();
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v.get("end_user").is_none());
        assert_eq!(v["downstream"]["version"], "v1");
    }

    #[test]
    fn a_failed_downstream_call_is_a_502_that_says_why() {
        let gone = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let front = serve_on_loopback(app("frontend", "v1", Some(("reviews:9080", gone))));
        let mut c = Client::new(front, Duration::from_secs(2));
        let r = c.get("frontend", "/", &[]).unwrap();
        assert_eq!(r.status, 502);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        let err = v["error"].as_str().unwrap();
        assert!(
            err.starts_with(&format!("calling reviews:9080 via {gone}: connect")),
            "{err}"
        );

        // A downstream that answers with an error status.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let denier = l.local_addr().unwrap();
        thread::spawn(move || {
            for s in l.incoming().map_while(Result::ok) {
                let mut conn = ServerConn::new(s, Duration::from_secs(5));
                while let Ok(Some(_)) = conn.next_request() {
                    let _ = conn.respond(403, &[], b"RBAC: access denied", false, false);
                }
            }
        });
        let front = serve_on_loopback(app("frontend", "v1", Some(("reviews:9080", denier))));
        let r = Client::new(front, Duration::from_secs(2))
            .get("frontend", "/", &[])
            .unwrap();
        assert_eq!(r.status, 502);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["downstream_status"], 403);
        assert!(v["error"]
            .as_str()
            .unwrap()
            .ends_with("answered 403: RBAC: access denied"));
    }

    #[test]
    fn flags() {
        AppArgs::command().debug_assert();
        let a = AppArgs::parse_from([
            "ringmesh-demo-app",
            "--name",
            "reviews",
            "--version",
            "v2",
            "--listen",
            "127.0.0.1:0",
            "--call",
            "ratings:9080",
            "--via",
            "127.0.0.102:15001",
        ]);
        assert_eq!((a.name.as_str(), a.version.as_str()), ("reviews", "v2"));
        assert_eq!(a.call.as_deref(), Some("ratings:9080"));
        assert!(AppArgs::try_parse_from([
            "ringmesh-demo-app",
            "--name",
            "x",
            "--listen",
            "127.0.0.1:0",
            "--call",
            "ratings:9080"
        ])
        .is_err());
    }
}
