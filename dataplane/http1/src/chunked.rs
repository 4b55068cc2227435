//! Chunked transfer coding (RFC 9112 §7.1), scanned but not decoded: the
//! proxy forwards the original bytes and only needs to know where the
//! message ends and whether the framing is valid.
//!
//! The scanner is a byte-at-a-time state machine (chunk data is skipped in
//! one step), so it gives the same answer wherever the input is split; the
//! `http1_chunked` fuzz target checks exactly that.

use crate::syntax::{hex_val, is_field_value_byte, is_qdtext, is_quoted_pair_byte, is_tchar};

/// Longest chunk-size line (size and extensions, without CRLF).
pub const MAX_CHUNK_LINE: u32 = 4 * 1024;
/// Largest trailer section (field lines and the final CRLF).
pub const MAX_TRAILER_BYTES: u32 = 16 * 1024;
/// Significant hex digits that still fit in a u64.
const MAX_SIZE_DIGITS: u8 = 16;
/// Longest trailer name we need to recognise (`transfer-encoding`).
const NAME_BUF: usize = 17;

/// Why chunked framing was rejected (the proxy answers 400 if nothing was
/// forwarded yet, otherwise it aborts both connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("invalid chunk size")]
    BadSize,
    #[error("chunk size overflow")]
    SizeOverflow,
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
    #[error("invalid chunk extension")]
    BadExtension,
    #[error("chunk size line too long")]
    LineTooLong,
    #[error("invalid trailer section")]
    BadTrailer,
    #[error("trailer section too large")]
    TrailerTooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// chunk-size digits (at least one before anything else).
    #[default]
    Size,
    /// BWS after the size: only `;` may follow.
    SizeWs,
    /// After `;`: BWS, then an extension name.
    ExtPreName,
    ExtName,
    /// BWS after a name: `=` or the next `;`.
    ExtPostName,
    /// After `=`: BWS, then a token or a quoted string.
    ExtPreValue,
    ExtToken,
    ExtQuoted,
    ExtQuotedEscape,
    /// Right after a closing quote: BWS, `;` or CR.
    ExtAfterQuoted,
    /// BWS after a value: only `;` may follow.
    ExtPostValue,
    /// CR of the size line seen, LF expected.
    SizeLf,
    /// `size` bytes of chunk data remain.
    Data,
    DataCr,
    DataLf,
    TrailerLineStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// CR of the final empty line seen.
    EndLf,
    Done,
    Failed(ChunkError),
}

/// Incremental scanner for a chunked body. Feed it successive slices of the
/// byte stream that follows the head; it keeps its state across calls.
///
/// After an error every further call returns the same error.
#[derive(Debug, Clone, Default)]
pub struct ChunkedDecoder {
    state: State,
    /// The chunk size being read, then the data bytes still to skip.
    size: u64,
    /// Significant (non-leading-zero) digits of the size so far.
    digits: u8,
    has_digit: bool,
    line_len: u32,
    trailer_len: u32,
    /// Lowercased prefix of the trailer field name being read.
    name: [u8; NAME_BUF],
    name_len: u32,
    data_bytes: u64,
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scan `input`. Returns how many leading bytes of `input` belong to this
    /// message (all of it unless the message ends inside `input`, in which
    /// case the rest is the next pipelined message). After the last-chunk and
    /// the trailer section's final CRLF, [`Self::is_done`] is true.
    /// Limits: chunk-size line (with extensions) ≤ 4 KiB, trailer section
    /// ≤ 16 KiB, chunk size fits in u64 (hex digits only, no sign, no
    /// whitespace before CRLF other than BWS before `;`), bare LF rejected.
    ///
    /// Trailer fields must be valid field lines (no obs-fold, no whitespace
    /// before the colon, no CTL in values) and may not be `Content-Length`,
    /// `Transfer-Encoding` or `Host` (RFC 9110 §6.5.1: a recipient must not
    /// act on them, and a next hop that merges trailers into the header
    /// section would).
    pub fn scan(&mut self, input: &[u8]) -> Result<usize, ChunkError> {
        self.scan_with(input, |_| {})
    }

    /// [`Self::scan`], also reporting each run of chunk *data* inside
    /// `input` (ascending, non-overlapping ranges) — what a proxy needs to
    /// de-chunk a body for an HTTP/1.0 recipient.
    pub fn scan_with(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => return Ok(i),
                State::Failed(e) => return Err(e),
                State::Data => {
                    let avail = (input.len() - i) as u64;
                    let n = self.size.min(avail);
                    // `n` ≤ `avail`, which came from a usize.
                    if n > 0 {
                        on_data(i..i + n as usize);
                    }
                    i += n as usize;
                    self.size -= n;
                    self.data_bytes = self.data_bytes.saturating_add(n);
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    let b = input[i];
                    i += 1;
                    if let Err(e) = self.step(b) {
                        self.state = State::Failed(e);
                        return Err(e);
                    }
                }
            }
        }
        match self.state {
            State::Failed(e) => Err(e),
            _ => Ok(i),
        }
    }

    /// The whole message (including trailers) has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Total chunk-data bytes seen so far (excluding framing).
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// Advance over one framing byte.
    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        use State::*;
        if matches!(
            self.state,
            Size | SizeWs
                | ExtPreName
                | ExtName
                | ExtPostName
                | ExtPreValue
                | ExtToken
                | ExtQuoted
                | ExtQuotedEscape
                | ExtAfterQuoted
                | ExtPostValue
        ) && b != b'\r'
        {
            self.line_len += 1;
            if self.line_len > MAX_CHUNK_LINE {
                return Err(ChunkError::LineTooLong);
            }
        }
        if matches!(
            self.state,
            TrailerLineStart | TrailerName | TrailerValue | TrailerLf | EndLf
        ) {
            self.trailer_len += 1;
            if self.trailer_len > MAX_TRAILER_BYTES {
                return Err(ChunkError::TrailerTooLarge);
            }
        }
        let ows = b == b' ' || b == b'\t';
        self.state = match (self.state, b) {
            (Size, _) if hex_val(b).is_some() => {
                let d = hex_val(b).unwrap_or_default();
                if self.digits > 0 || d != 0 {
                    self.digits += 1;
                    if self.digits > MAX_SIZE_DIGITS {
                        return Err(ChunkError::SizeOverflow);
                    }
                }
                self.size = (self.size << 4) | u64::from(d);
                self.has_digit = true;
                Size
            }
            (Size, _) if !self.has_digit => return Err(ChunkError::BadSize),
            (Size, b';') | (SizeWs, b';') => ExtPreName,
            (Size, _) if ows => SizeWs,
            (Size, b'\r') => SizeLf,
            (Size, _) => return Err(ChunkError::BadSize),
            (SizeWs, _) if ows => SizeWs,
            (SizeWs, _) => return Err(ChunkError::BadSize),

            (ExtPreName, _) if ows => ExtPreName,
            (ExtPreName, _) if is_tchar(b) => ExtName,
            (ExtName, _) if is_tchar(b) => ExtName,
            (ExtName, _) if ows => ExtPostName,
            (ExtName, b'=') | (ExtPostName, b'=') => ExtPreValue,
            (ExtName, b';') | (ExtPostName, b';') => ExtPreName,
            (ExtName, b'\r') => SizeLf,
            (ExtPostName, _) if ows => ExtPostName,
            (ExtPreValue, _) if ows => ExtPreValue,
            (ExtPreValue, b'"') => ExtQuoted,
            (ExtPreValue, _) if is_tchar(b) => ExtToken,
            (ExtToken, _) if is_tchar(b) => ExtToken,
            (ExtToken, _) | (ExtAfterQuoted, _) | (ExtPostValue, _) if ows => ExtPostValue,
            (ExtToken, b';') | (ExtAfterQuoted, b';') | (ExtPostValue, b';') => ExtPreName,
            (ExtToken, b'\r') | (ExtAfterQuoted, b'\r') => SizeLf,
            (ExtQuoted, b'"') => ExtAfterQuoted,
            (ExtQuoted, b'\\') => ExtQuotedEscape,
            (ExtQuoted, _) if is_qdtext(b) => ExtQuoted,
            (ExtQuotedEscape, _) if is_quoted_pair_byte(b) => ExtQuoted,
            (
                ExtPreName | ExtName | ExtPostName | ExtPreValue | ExtToken | ExtQuoted
                | ExtQuotedEscape | ExtAfterQuoted | ExtPostValue,
                _,
            ) => return Err(ChunkError::BadExtension),

            (SizeLf, b'\n') => {
                let size = self.size;
                self.has_digit = false;
                self.digits = 0;
                self.line_len = 0;
                if size == 0 {
                    TrailerLineStart
                } else {
                    Data
                }
            }
            (SizeLf, _) => return Err(ChunkError::BadSize),

            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Size,
            (DataCr | DataLf, _) => return Err(ChunkError::MissingCrlf),

            (TrailerLineStart, b'\r') => EndLf,
            (TrailerLineStart, _) if is_tchar(b) => {
                self.name_len = 0;
                self.push_name_byte(b);
                TrailerName
            }
            (TrailerName, _) if is_tchar(b) => {
                self.push_name_byte(b);
                TrailerName
            }
            (TrailerName, b':') => {
                if self.is_forbidden_trailer() {
                    return Err(ChunkError::BadTrailer);
                }
                TrailerValue
            }
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, _) if is_field_value_byte(b) => TrailerValue,
            (TrailerLf, b'\n') => TrailerLineStart,
            (EndLf, b'\n') => Done,
            (TrailerLineStart | TrailerName | TrailerValue | TrailerLf | EndLf, _) => {
                return Err(ChunkError::BadTrailer)
            }

            // `scan` never steps in these states.
            (Data | Done | Failed(_), _) => self.state,
        };
        Ok(())
    }

    fn push_name_byte(&mut self, b: u8) {
        if let Some(slot) = self.name.get_mut(self.name_len as usize) {
            *slot = b.to_ascii_lowercase();
        }
        self.name_len = self.name_len.saturating_add(1);
    }

    fn is_forbidden_trailer(&self) -> bool {
        let Some(name) = self.name.get(..self.name_len as usize) else {
            return false;
        };
        matches!(name, b"content-length" | b"transfer-encoding" | b"host")
    }
}
