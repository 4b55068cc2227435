//! Chunked transfer coding (RFC 9112 §7.1), scanned but not decoded: the
//! proxy forwards the original bytes and only needs to know where the
//! message ends and whether the framing is valid.

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

/// Incremental scanner for a chunked body. Feed it successive slices of the
/// byte stream that follows the head; it keeps its state across calls.
#[derive(Debug, Clone, Default)]
pub struct ChunkedDecoder {
    // Implementation-defined state.
    _private: (),
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
    pub fn scan(&mut self, input: &[u8]) -> Result<usize, ChunkError> {
        let _ = input;
        todo!("ringmesh-http1: ChunkedDecoder::scan")
    }

    /// The whole message (including trailers) has been seen.
    pub fn is_done(&self) -> bool {
        todo!("ringmesh-http1: ChunkedDecoder::is_done")
    }

    /// Total chunk-data bytes seen so far (excluding framing).
    pub fn data_bytes(&self) -> u64 {
        todo!("ringmesh-http1: ChunkedDecoder::data_bytes")
    }
}
