//! `ChunkedDecoder::scan` on arbitrary bytes: feeding the input in one call,
//! byte by byte, or split at points derived from the input must give the
//! same result (consumed length, done, data bytes, the de-chunked data that
//! `scan_with` reports, or the same error), and
//! the consumed length never exceeds the input. The one-shot result is also
//! checked against `reference`, an independent line-based reading of the
//! RFC 9112 §7.1 grammar written without the decoder's state machine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringmesh_http1::{ChunkError, ChunkedDecoder};

/// (consumed or error, done, data bytes, FNV-1a of the de-chunked data that
/// `scan_with` reported).
type Outcome = (Result<usize, ChunkError>, bool, u64, u64);

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fuzz_target!(|data: &[u8]| {
    let whole = feed(data, &[]);
    if let (Ok(n), done, bytes, _) = whole {
        assert!(n <= data.len());
        assert!(bytes <= n as u64);
        if done {
            assert!(data[..n].ends_with(b"\r\n"));
            // The message alone gives the same answer.
            assert_eq!(feed(&data[..n], &[]), whole);
        } else {
            assert_eq!(n, data.len(), "an unfinished message consumes everything");
        }
    }

    match (reference(data), &whole) {
        (Reference::Done(n, bytes, hash), _) => {
            assert_eq!(whole, (Ok(n), true, bytes, hash), "reference: done at {n}")
        }
        (Reference::Invalid, _) => assert!(
            whole.0.is_err(),
            "reference rejects, decoder accepts: {whole:?}"
        ),
        // The decoder may reject early, inside a line the reference has not
        // seen the end of yet.
        (Reference::Incomplete, (Ok(n), done, _, _)) => assert!(!done && *n == data.len()),
        (Reference::Incomplete, (Err(_), _, _, _)) => {}
    }

    let every: Vec<usize> = (1..data.len()).collect();
    assert_eq!(feed(data, &every), whole, "byte at a time");

    // A handful of single splits, and a pseudo-random multi-split.
    for j in 1..8 {
        let p = data.len() * j / 8;
        assert_eq!(feed(data, &[p]), whole, "split at {p}");
    }
    let mut points = Vec::new();
    let mut h: u32 = 0x811c_9dc5;
    let mut at = 0;
    for &b in data {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    while at < data.len() {
        h = h.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        at += 1 + (h >> 16) as usize % 97;
        if at < data.len() {
            points.push(at);
        }
    }
    assert_eq!(feed(data, &points), whole, "splits at {points:?}");
});

/// Feed `input` split at `points` (ascending). Stops at the first error or
/// once the message is done, as the proxy does.
fn feed(input: &[u8], points: &[usize]) -> Outcome {
    let mut d = ChunkedDecoder::new();
    let mut total = 0;
    let mut prev = 0;
    let mut hash = FNV_OFFSET;
    let mut data_len = 0u64;
    for &p in points.iter().chain(std::iter::once(&input.len())) {
        let piece = &input[prev..p];
        prev = p;
        let mut last_end = 0;
        let r = d.scan_with(piece, |range| {
            assert!(range.start >= last_end && range.start < range.end && range.end <= piece.len());
            last_end = range.end;
            data_len += range.len() as u64;
            hash = fnv(hash, &piece[range]);
        });
        match r {
            Ok(n) => {
                assert!(n <= piece.len() && last_end <= n);
                total += n;
                assert_eq!(data_len, d.data_bytes(), "reported ranges cover all data");
                if d.is_done() {
                    assert_eq!(
                        d.scan(b"x"),
                        Ok(0),
                        "scanning after the end consumes nothing"
                    );
                    return (Ok(total), true, d.data_bytes(), hash);
                }
                assert_eq!(n, piece.len());
            }
            Err(e) => {
                assert_eq!(d.scan(b"0\r\n\r\n"), Err(e), "errors are sticky");
                return (Err(e), false, d.data_bytes(), hash);
            }
        }
    }
    (Ok(total), d.is_done(), d.data_bytes(), hash)
}

enum Reference {
    /// Consumed length, data bytes, FNV-1a of the de-chunked data.
    Done(usize, u64, u64),
    Invalid,
    Incomplete,
}

const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The next CRLF-terminated line at `pos`: `Ok(Some(line))` (without CRLF),
/// `Ok(None)` if no CRLF yet, `Err` on a bare CR or LF before it.
fn line(input: &[u8], pos: usize) -> Result<Option<&[u8]>, ()> {
    let rest = &input[pos..];
    for i in 0..rest.len() {
        match rest[i] {
            b'\r' if rest.get(i + 1) == Some(&b'\n') => return Ok(Some(&rest[..i])),
            b'\r' if i + 1 == rest.len() => return Ok(None),
            b'\r' | b'\n' => return Err(()),
            _ => {}
        }
    }
    Ok(None)
}

/// `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`,
/// consumed left to right with plain index arithmetic.
fn valid_extensions(e: &[u8]) -> bool {
    let mut i = 0;
    let skip = |mut i: usize| {
        while i < e.len() && ows(e[i]) {
            i += 1
        }
        i
    };
    loop {
        i = skip(i);
        if i == e.len() {
            // Whitespace may only precede ";" or "=", never the CRLF.
            return e.last().is_none_or(|&b| !ows(b));
        }
        if e[i] != b';' {
            return false;
        }
        i = skip(i + 1);
        let start = i;
        while i < e.len() && tchar(e[i]) {
            i += 1
        }
        if i == start {
            return false;
        }
        let after_name = skip(i);
        if after_name < e.len() && e[after_name] == b'=' {
            i = skip(after_name + 1);
            if i < e.len() && e[i] == b'"' {
                i += 1;
                loop {
                    match e.get(i) {
                        None => return false,
                        Some(b'"') => break,
                        Some(b'\\') => match e.get(i + 1) {
                            Some(&c) if c == b'\t' || (b' '..=b'~').contains(&c) || c >= 0x80 => {
                                i += 2
                            }
                            _ => return false,
                        },
                        Some(&c)
                            if c == b'\t'
                                || c == b' '
                                || c == b'!'
                                || (b'#'..=b'~').contains(&c)
                                || c >= 0x80 =>
                        {
                            i += 1
                        }
                        Some(_) => return false,
                    }
                }
                i += 1;
            } else {
                let start = i;
                while i < e.len() && tchar(e[i]) {
                    i += 1
                }
                if i == start {
                    return false;
                }
            }
        }
    }
}

fn reference(input: &[u8]) -> Reference {
    let mut pos = 0;
    let mut data: u64 = 0;
    let mut hash = FNV_OFFSET;
    loop {
        let l = match line(input, pos) {
            Err(()) => return Reference::Invalid,
            Ok(None) => return Reference::Incomplete,
            Ok(Some(l)) => l,
        };
        if l.len() > MAX_LINE {
            return Reference::Invalid;
        }
        pos += l.len() + 2;
        let (size, ext) = match l.iter().position(|&b| b == b';' || ows(b)) {
            Some(i) => l.split_at(i),
            None => (l, &b""[..]),
        };
        if size.is_empty() || !size.iter().all(u8::is_ascii_hexdigit) || !valid_extensions(ext) {
            return Reference::Invalid;
        }
        if !ext.is_empty() && !ext.contains(&b';') {
            return Reference::Invalid;
        }
        let significant = size.iter().skip_while(|&&b| b == b'0').count();
        if significant > 16 {
            return Reference::Invalid;
        }
        let Ok(n) = u64::from_str_radix(std::str::from_utf8(size).unwrap_or("x"), 16) else {
            return Reference::Invalid;
        };
        if n == 0 {
            break;
        }
        let avail = (input.len() - pos) as u64;
        if avail < n {
            return Reference::Incomplete;
        }
        pos += n as usize;
        data += n;
        hash = fnv(hash, &input[pos - n as usize..pos]);
        match &input[pos..] {
            [b'\r', b'\n', ..] => pos += 2,
            [] | [b'\r'] => return Reference::Incomplete,
            _ => return Reference::Invalid,
        }
    }
    let trailer_start = pos;
    loop {
        let l = match line(input, pos) {
            Err(()) => return Reference::Invalid,
            Ok(None) => {
                return if input.len() - trailer_start > MAX_TRAILERS {
                    Reference::Invalid
                } else {
                    Reference::Incomplete
                };
            }
            Ok(Some(l)) => l,
        };
        pos += l.len() + 2;
        if pos - trailer_start > MAX_TRAILERS {
            return Reference::Invalid;
        }
        if l.is_empty() {
            return Reference::Done(pos, data, hash);
        }
        let Some(colon) = l.iter().position(|&b| b == b':') else {
            return Reference::Invalid;
        };
        let (name, value) = (&l[..colon], &l[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| tchar(b)) {
            return Reference::Invalid;
        }
        if !value
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
        {
            return Reference::Invalid;
        }
        let lower = name.to_ascii_lowercase();
        if lower == b"content-length" || lower == b"transfer-encoding" || lower == b"host" {
            return Reference::Invalid;
        }
    }
}
