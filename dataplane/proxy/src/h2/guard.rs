//! A frame meter on the bytes a downstream HTTP/2 client sends, below the
//! `h2` codec: it follows the frame boundaries (9-byte headers, payload
//! lengths) without decoding payloads and closes connections that flood
//! the proxy with frames that cost work but carry no request.
//!
//! h2 itself bounds memory for most of these (one pending PING ack, one
//! pending SETTINGS ack, `max_pending_accept_reset_streams`, header list
//! size, CONTINUATION counts): it applies back-pressure rather than
//! closing. The guard turns a sustained flood into a GOAWAY
//! (`ENHANCE_YOUR_CALM`) and a close, as Envoy's flood protections do.
//!
//! Budgets are per connection and per one-second window, generous for
//! real clients (which send a handful of SETTINGS and PINGs per
//! connection, and reset only streams they abandon):
//! - SETTINGS (not ACK) and PING (not ACK): [`Budgets::control`] each;
//! - RST_STREAM: [`Budgets::resets`] (rapid reset, CVE-2023-44487);
//! - PRIORITY and empty DATA frames without END_STREAM: [`Budgets::control`];
//! - CONTINUATION: at most [`Budgets::continuations`] in one header block
//!   (CONTINUATION flood, 2024).

use std::time::{Duration, Instant};

use super::PREFACE;

const FRAME_HEADER: usize = 9;
const WINDOW: Duration = Duration::from_secs(1);

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const CONTINUATION: u8 = 0x9;

const FLAG_ACK: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;

/// Frame budgets (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    pub control: u32,
    pub resets: u32,
    pub continuations: u32,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            control: 100,
            resets: 200,
            continuations: 32,
        }
    }
}

#[derive(Default)]
struct Counts {
    settings: u32,
    ping: u32,
    reset: u32,
    priority: u32,
    empty_data: u32,
}

/// Follows a client's frames (server side: the preface first).
pub struct FrameGuard {
    budgets: Budgets,
    /// Preface bytes still expected.
    preface_left: usize,
    header: [u8; FRAME_HEADER],
    header_len: usize,
    /// Payload bytes of the current frame still to skip.
    payload_left: u32,
    /// CONTINUATION frames in the header block being received; `None`
    /// outside a header block.
    continuation: Option<u32>,
    window_start: Instant,
    counts: Counts,
}

impl FrameGuard {
    pub fn server(budgets: Budgets) -> FrameGuard {
        FrameGuard {
            budgets,
            preface_left: PREFACE.len(),
            header: [0; FRAME_HEADER],
            header_len: 0,
            payload_left: 0,
            continuation: None,
            window_start: Instant::now(),
            counts: Counts::default(),
        }
    }

    /// Account for `bytes`, the next bytes of the stream. `Err` names the
    /// flood once a budget is exceeded, with the offset in `bytes` where
    /// the offending frame starts (0 if it started in earlier bytes): what
    /// comes before it may still be delivered.
    pub fn inspect(&mut self, all: &[u8]) -> Result<(), (&'static str, usize)> {
        let mut bytes = all;
        if self.preface_left > 0 {
            let n = self.preface_left.min(bytes.len());
            self.preface_left -= n;
            bytes = &bytes[n..];
        }
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = (self.payload_left as usize).min(bytes.len());
                self.payload_left -= n as u32;
                bytes = &bytes[n..];
                continue;
            }
            let frame_start = (all.len() - bytes.len()).saturating_sub(self.header_len);
            let n = (FRAME_HEADER - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
            self.header_len += n;
            bytes = &bytes[n..];
            if self.header_len == FRAME_HEADER {
                self.header_len = 0;
                let h = self.header;
                let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
                self.payload_left = len;
                self.frame(h[3], h[4], len)
                    .map_err(|reason| (reason, frame_start))?;
            }
        }
        Ok(())
    }

    fn frame(&mut self, kind: u8, flags: u8, len: u32) -> Result<(), &'static str> {
        let now = Instant::now();
        if now.duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.counts = Counts::default();
        }
        let b = self.budgets;
        let c = &mut self.counts;
        let (count, limit, flood) = match kind {
            SETTINGS if flags & FLAG_ACK == 0 => (&mut c.settings, b.control, "SETTINGS flood"),
            PING if flags & FLAG_ACK == 0 => (&mut c.ping, b.control, "PING flood"),
            RST_STREAM => (&mut c.reset, b.resets, "RST_STREAM flood (rapid reset)"),
            PRIORITY => (&mut c.priority, b.control, "PRIORITY flood"),
            DATA if len == 0 && flags & FLAG_END_STREAM == 0 => {
                (&mut c.empty_data, b.control, "empty DATA flood")
            }
            HEADERS | PUSH_PROMISE => {
                self.continuation = (flags & FLAG_END_HEADERS == 0).then_some(0);
                return Ok(());
            }
            CONTINUATION => {
                if let Some(n) = &mut self.continuation {
                    *n += 1;
                    if *n > b.continuations {
                        return Err("CONTINUATION flood");
                    }
                }
                if flags & FLAG_END_HEADERS != 0 {
                    self.continuation = None;
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        *count += 1;
        if *count > limit {
            return Err(flood);
        }
        Ok(())
    }
}
