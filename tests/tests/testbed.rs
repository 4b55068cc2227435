//! The backend itself, without a proxy: what the other tests rely on it for.

use std::time::{Duration, Instant};

use ringmesh_e2e::{pattern, Backend, Client};

#[test]
fn default_and_status_endpoints() {
    let b = Backend::start("alpha");
    let mut c = Client::connect(b.addr());
    let r = c.get("x", "/");
    assert_eq!((r.status, r.text().as_str()), (200, "alpha"));
    assert_eq!(r.header("x-backend"), Some("alpha"));
    let r = c.get("x", "/status/503");
    assert_eq!(r.status_line, "HTTP/1.1 503 Service Unavailable");
    let r = c.get("x", "/status/204");
    assert_eq!((r.status, r.body_len), (204, 0));
    let r = c.request("HEAD", "x", "/bytes/100", &[], b"").unwrap();
    assert_eq!((r.status, r.header("content-length")), (200, Some("100")));
    // Still in sync after HEAD.
    assert_eq!(c.get("x", "/anything").text(), "alpha");
}

#[test]
fn keep_alive_and_pipelining_on_one_connection() {
    let b = Backend::start("p");
    let mut c = Client::connect(b.addr());
    c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /echo HTTP/1.1\r\nHost: y\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response().unwrap().text(), "p");
    assert_eq!(c.read_response().unwrap().json()["headers"][0][1], "y");
    for _ in 0..50 {
        assert_eq!(c.get("x", "/").status, 200);
    }
    let stats = b.stats();
    assert_eq!(stats["connections"], 2, "{stats}");
    assert_eq!(stats["requests"], 53, "{stats}");
}

#[test]
fn echo_reports_headers_in_order_and_chunked_body_with_trailers() {
    let b = Backend::start("e");
    let mut c = Client::connect(b.addr());
    c.send(
        b"POST /echo?q=1 HTTP/1.1\r\nHost: h\r\nX-B: 2\r\nx-a: 1\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-t: done\r\n\r\n",
    )
    .unwrap();
    let v = c.read_response().unwrap().json();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/echo");
    assert_eq!(v["target"], "/echo?q=1");
    assert_eq!(v["headers"][1], serde_json::json!(["X-B", "2"]));
    assert_eq!(v["headers"][2], serde_json::json!(["x-a", "1"]));
    assert_eq!(v["body_len"], 11);
    assert_eq!(v["body_crc32"], crc32fast::hash(b"hello world"));
    assert_eq!(v["trailers"], serde_json::json!([["x-t", "done"]]));
}

#[test]
fn chunked_response_with_trailers() {
    let b = Backend::start("c");
    let mut c = Client::connect(b.addr());
    let r = c.get("x", "/chunked");
    assert!(r.chunked);
    assert_eq!(r.text(), "hello chunked world");
    assert_eq!(
        r.trailer("x-checksum"),
        Some(crc32fast::hash(b"hello chunked world").to_string().as_str())
    );
    assert_eq!(r.trailer("x-trailer-a"), Some("1"));
}

#[test]
fn bytes_and_sink_round_trip_with_checksums() {
    let b = Backend::start("s");
    let mut c = Client::connect(b.addr());
    for (path, chunked) in [
        ("/bytes/1000000", false),
        ("/bytes/1000000?chunked=1", true),
    ] {
        let mut crc = crc32fast::Hasher::new();
        let r = c.read_response_streaming_after(path, &mut crc);
        assert_eq!((r.status, r.body_len, r.chunked), (200, 1_000_000, chunked));
        assert_eq!(crc.finalize(), pattern::crc32(1_000_000));
    }
    let mut body = Vec::new();
    pattern::for_each_slice(300_000, |s| body.extend_from_slice(s));
    let v = c.request("POST", "x", "/sink", &[], &body).unwrap().json();
    assert_eq!(v["bytes"], 300_000);
    assert_eq!(v["crc32"], pattern::crc32(300_000));
}

trait StreamGet {
    fn read_response_streaming_after(
        &mut self,
        path: &str,
        crc: &mut crc32fast::Hasher,
    ) -> ringmesh_e2e::Response;
}

impl StreamGet for Client {
    fn read_response_streaming_after(
        &mut self,
        path: &str,
        crc: &mut crc32fast::Hasher,
    ) -> ringmesh_e2e::Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        self.read_response_streaming(false, &mut |b| crc.update(b))
            .unwrap()
    }
}

#[test]
fn records_every_byte_even_unparseable() {
    let b = Backend::start_recording("r");
    let mut c = Client::connect(b.addr());
    let good = b"GET /one HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc".to_vec();
    c.send(&good).unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
    assert_eq!(b.recorded(), good);
    let mut c2 = Client::connect(b.addr());
    c2.send(b"garbage without end").unwrap();
    c2.shutdown_write().unwrap();
    let (_, closed) = c2.read_until_close(Duration::from_secs(5));
    assert!(closed);
    let mut expected = good.clone();
    expected.extend_from_slice(b"garbage without end");
    ringmesh_e2e::wait_for(Duration::from_secs(2), "the record to be flushed", || {
        (b.recorded() == expected).then_some(())
    });
}

#[test]
fn delay_close_and_until_close() {
    let b = Backend::start("d");
    let mut c = Client::connect(b.addr());
    let t = Instant::now();
    assert_eq!(c.get("x", "/delay/200").status, 200);
    assert!(t.elapsed() >= Duration::from_millis(200));
    let r = c.get("x", "/close");
    assert!(r.has_connection_close());
    let (rest, closed) = c.read_until_close(Duration::from_secs(2));
    assert!(closed && rest.is_empty());
    let mut c = Client::connect(b.addr());
    let r = c.get("x", "/until-close");
    assert_eq!(r.text(), "body delimited by close");
}

#[test]
fn hundreds_of_requests_per_second_at_least() {
    let b = Backend::start("fast");
    let mut c = Client::connect(b.addr());
    let t = Instant::now();
    for _ in 0..2000 {
        assert_eq!(c.get("x", "/").status, 200);
    }
    let rps = 2000.0 / t.elapsed().as_secs_f64();
    assert!(rps > 1000.0, "testbed too slow: {rps:.0} rps");
}
