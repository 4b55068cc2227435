//! `ringmesh-bench`: an HTTP/1.1 load generator built to measure proxies.
//!
//! Two modes:
//! - **closed loop** (no `--rate`): every connection sends its next request
//!   as soon as the previous response ends; the result is the maximum
//!   throughput and the latency *under that load* (each sample runs from
//!   the write of the request to the last byte of its response).
//! - **open loop** (`--rate R`): requests are *scheduled* at a constant
//!   rate, independently of how fast responses come back, and each latency
//!   sample runs from the request's *intended* send time. A stalled server
//!   therefore shows up as a queue of late requests whose latencies include
//!   the wait, instead of silently lowering the send rate (coordinated
//!   omission). Scheduled requests are handed to whichever connection is
//!   idle; with HTTP/1.1 and no pipelining, a connection carries one request
//!   at a time.
//!
//! Each `--threads` thread runs its own current-thread tokio runtime (epoll)
//! with its own connections, histogram and counters; they are merged at the
//! end. Open-loop scheduling uses a `timerfd` per thread, so send times are
//! accurate to a few microseconds instead of tokio's millisecond timer wheel.
//!
//! With the `tls` cargo feature, `https://` targets go through rustls
//! (`--cacert FILE` or `--insecure`); the default build has no TLS code.
//!
//! The HTTP/1.1 client is hand-rolled: the request bytes are built once, the
//! response head is parsed with `httparse`, and bodies framed by
//! `Content-Length`, `chunked`, or the end of the connection are consumed
//! without being stored.

pub mod args;
pub mod engine;
mod pacer;
pub mod report;
pub mod response;
mod tls;
#[cfg(feature = "xds-load")]
pub mod xds_load;

pub use args::{parse_duration, BenchConfig, Target};
pub use engine::run;
pub use report::Report;
