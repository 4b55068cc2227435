//! See where intercepted connections were going: a listener that answers
//! every connection with one line naming itself, the connection's local
//! address and its `SO_ORIGINAL_DST` ([`ringmesh_iptables::original_dst`]),
//! and a client that prints that line. Handy to check interception in a
//! pod by hand; the end-to-end tests (`tests/tests/netns.rs`) use it too.
//!
//! ```text
//! original-dst-echo --listen 0.0.0.0:15001 [--name N] [--for-secs 60]
//!     prints `LISTENING <addr>`, then for each connection writes (to it and
//!     to stdout) `name=N local=ADDR peer=ADDR original_dst=ADDR|none`
//! original-dst-echo --connect ADDR [--timeout-ms 2000]
//!     prints the line the server answered; exits 1 (with the error on
//!     stderr) if the connection fails
//! ```

use std::{
    env,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::ExitCode,
    thread,
    time::{Duration, Instant},
};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let number = |name: &str, default: u64| {
        flag(name).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, got {v:?}"))
        })
    };
    let addr = |v: String| -> SocketAddr {
        v.parse()
            .unwrap_or_else(|_| panic!("expected IP:PORT, got {v:?}"))
    };
    if let Some(listen) = flag("--listen") {
        let name = flag("--name").unwrap_or_else(|| "original-dst-echo".into());
        serve(
            addr(listen),
            &name,
            Duration::from_secs(number("--for-secs", 60)),
        );
        ExitCode::SUCCESS
    } else if let Some(target) = flag("--connect") {
        connect(
            addr(target),
            Duration::from_millis(number("--timeout-ms", 2000)),
        )
    } else {
        eprintln!("usage: original-dst-echo --listen ADDR [--name N] [--for-secs S] | --connect ADDR [--timeout-ms MS]");
        ExitCode::from(2)
    }
}

/// Serve until `lifetime` has passed (so a forgotten instance goes away).
fn serve(addr: SocketAddr, name: &str, lifetime: Duration) {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    println!("LISTENING {}", listener.local_addr().expect("local_addr"));
    let deadline = Instant::now() + lifetime;
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                let _ = stream.set_nonblocking(false);
                let local = stream
                    .local_addr()
                    .map_or_else(|e| format!("error({e})"), |a| a.to_string());
                let original = ringmesh_iptables::original_dst(&stream)
                    .map_or_else(|_| "none".to_string(), |a| a.to_string());
                let line = format!("name={name} local={local} peer={peer} original_dst={original}");
                // Whoever started us may have stopped reading our output.
                let _ = writeln!(std::io::stdout(), "{line}");
                let _ = stream.write_all(format!("{line}\n").as_bytes());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

fn connect(addr: SocketAddr, timeout: Duration) -> ExitCode {
    let stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("connecting to {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let mut line = String::new();
    match BufReader::new(stream).read_line(&mut line) {
        Ok(n) if n > 0 => {
            print!("{line}");
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!("{addr} closed without answering");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("reading from {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}
