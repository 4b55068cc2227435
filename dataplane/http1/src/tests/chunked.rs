use crate::{ChunkError, ChunkedDecoder, MAX_CHUNK_LINE, MAX_TRAILER_BYTES};

/// Feed `input` in one call.
fn one_shot(input: &[u8]) -> (Result<usize, ChunkError>, bool, u64) {
    let mut d = ChunkedDecoder::new();
    let r = d.scan(input);
    (r, d.is_done(), d.data_bytes())
}

/// Feed `input` split at the given points; the total consumed, or the error.
fn split_at_points(input: &[u8], points: &[usize]) -> (Result<usize, ChunkError>, bool, u64) {
    let mut d = ChunkedDecoder::new();
    let mut total = 0;
    let mut prev = 0;
    for &p in points.iter().chain(std::iter::once(&input.len())) {
        let piece = &input[prev..p];
        prev = p;
        match d.scan(piece) {
            Ok(n) => {
                assert!(n <= piece.len());
                total += n;
                if d.is_done() {
                    return (Ok(total), true, d.data_bytes());
                }
                assert_eq!(
                    n,
                    piece.len(),
                    "a message that is not done consumes everything"
                );
            }
            Err(e) => return (Err(e), d.is_done(), d.data_bytes()),
        }
    }
    (Ok(total), d.is_done(), d.data_bytes())
}

/// One-shot, every single split point, and byte-at-a-time must agree.
fn assert_split_invariant(input: &[u8]) -> (Result<usize, ChunkError>, bool, u64) {
    let whole = one_shot(input);
    for i in 0..=input.len() {
        assert_eq!(
            split_at_points(input, &[i]),
            whole,
            "split at {i} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    let every: Vec<usize> = (1..input.len()).collect();
    assert_eq!(
        split_at_points(input, &every),
        whole,
        "byte-at-a-time {:?}",
        String::from_utf8_lossy(input)
    );
    whole
}

fn ok(input: &[u8]) -> (usize, u64) {
    match assert_split_invariant(input) {
        (Ok(n), true, data) => (n, data),
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(input)),
    }
}

fn err(input: &[u8]) -> ChunkError {
    match assert_split_invariant(input) {
        (Err(e), _, _) => e,
        other => panic!(
            "expected an error, got {other:?} for {:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

#[test]
fn simple_body() {
    let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    assert_eq!(ok(body), (body.len(), 11));
}

#[test]
fn minimal_body() {
    assert_eq!(ok(b"0\r\n\r\n"), (5, 0));
}

#[test]
fn stops_at_message_end_for_pipelining() {
    let body = b"3\r\nabc\r\n0\r\n\r\n";
    let mut stream = body.to_vec();
    stream.extend_from_slice(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let (r, done, data) = assert_split_invariant(&stream);
    assert_eq!(r, Ok(body.len()));
    assert!(done);
    assert_eq!(data, 3);
    // Scanning after the end consumes nothing.
    let mut d = ChunkedDecoder::new();
    assert_eq!(d.scan(&stream), Ok(body.len()));
    assert_eq!(d.scan(b"more"), Ok(0));
    assert_eq!(d.scan(b""), Ok(0));
    assert!(d.is_done());
}

#[test]
fn incomplete_bodies_consume_everything() {
    let body = b"5\r\nhello\r\n0\r\n\r\n";
    for i in 0..body.len() {
        let (r, done, _) = assert_split_invariant(&body[..i]);
        assert_eq!(r, Ok(i));
        assert!(!done, "prefix {i}");
    }
}

#[test]
fn hex_sizes() {
    let mut body = b"a\r\n0123456789\r\nA\r\n0123456789\r\n000010\r\n".to_vec();
    body.extend_from_slice(&[b'x'; 16]);
    body.extend_from_slice(b"\r\n0000\r\n\r\n");
    assert_eq!(ok(&body), (body.len(), 36));
    // Many leading zeros do not count towards the 16 significant digits.
    let body = b"0000000000000000000000000001\r\nx\r\n0\r\n\r\n";
    assert_eq!(ok(body).1, 1);
}

#[test]
fn largest_size_is_accepted() {
    let mut d = ChunkedDecoder::new();
    assert_eq!(d.scan(b"ffffffffffffffff\r\nabc"), Ok(21));
    assert!(!d.is_done());
    assert_eq!(d.data_bytes(), 3);
}

#[test]
fn size_overflow() {
    assert_eq!(err(b"10000000000000000\r\n"), ChunkError::SizeOverflow);
    assert_eq!(err(b"00fffffffffffffffff\r\n"), ChunkError::SizeOverflow);
}

#[test]
fn bad_sizes() {
    for input in [
        &b"\r\n"[..],
        b"x\r\n",
        b"-1\r\n",
        b"+1\r\n",
        b"0x5\r\n",
        b" 5\r\n",
        b"5 \r\n",
        b"5\t\r\n",
        b"5\n",
        b"5\r\r\n",
        b"5\rx",
        b";a\r\n",
        b"5 x\r\n",
        b"5\x00\r\n",
    ] {
        assert_eq!(
            err(input),
            ChunkError::BadSize,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn extensions() {
    for line in [
        &b"5;a"[..],
        b"5;a=b",
        b"5 ;a=b",
        b"5\t; a = b",
        b"5;a;b;c=d",
        b"5;a=\"\"",
        b"5;a=\"quoted; with, stuff\"",
        b"5;a=\"esc\\\"aped\\\\\";b",
        b"5;a=\"\xff obs\"",
        b"5;name=tok!#$%&'*+-.^_`|~",
        b"5;a =\"x\" ;b",
    ] {
        let mut body = line.to_vec();
        body.extend_from_slice(b"\r\nhello\r\n0;last=1\r\n\r\n");
        assert_eq!(
            ok(&body),
            (body.len(), 5),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn bad_extensions() {
    for line in [
        &b"5;"[..],
        b"5;\r",
        b"5; ",
        b"5;a=",
        b"5;a= ",
        b"5;a \r",
        b"5;a=b \r",
        b"5;a=\"x\" \r",
        b"5;a=\"unterminated",
        b"5;a=\"ctl\x01\"",
        b"5;a=\"x\"y",
        b"5;a=b=c",
        b"5;a@b",
        b"5;a=\"\\\x01\"",
        b"5;a\n",
        b"5;=b",
        b"5;a=(b)",
    ] {
        let mut body = line.to_vec();
        body.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert_eq!(
            err(&body),
            ChunkError::BadExtension,
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn missing_crlf_after_data() {
    for input in [
        &b"5\r\nhelloX\r\n0\r\n\r\n"[..],
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello\rX",
        b"5\r\nhello0\r\n\r\n",
        b"3\r\nhello\r\n0\r\n\r\n",
    ] {
        assert_eq!(
            err(input),
            ChunkError::MissingCrlf,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn size_line_limit() {
    let mut line = b"5;a=".to_vec();
    line.resize(MAX_CHUNK_LINE as usize, b'b');
    line.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    assert!(one_shot(&line).1);
    let mut line = b"5;a=".to_vec();
    line.resize(MAX_CHUNK_LINE as usize + 1, b'b');
    line.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    assert_eq!(one_shot(&line).0, Err(ChunkError::LineTooLong));
    let zeros = vec![b'0'; MAX_CHUNK_LINE as usize + 1];
    assert_eq!(one_shot(&zeros).0, Err(ChunkError::LineTooLong));
}

#[test]
fn trailers() {
    let body = b"1\r\nx\r\n0\r\nX-Checksum: abc\r\nX-Empty:\r\nX-Tab:\tv\xff \r\n\r\n";
    assert_eq!(ok(body), (body.len(), 1));
}

#[test]
fn bad_trailers() {
    for trailer in [
        &b" X: v\r\n"[..],
        b"\tX: v\r\n",
        b"X : v\r\n",
        b": v\r\n",
        b"X\r\n",
        b"X: a\x00b\r\n",
        b"X: a\x7fb\r\n",
        b"X: v\n",
        b"X: v\r\r\n",
        b"X: v\r\n\n",
        b"\n",
        b"X(: v\r\n",
        b"Content-Length: 5\r\n",
        b"transfer-encoding: chunked\r\n",
        b"HOST: evil\r\n",
    ] {
        let mut body = b"0\r\n".to_vec();
        body.extend_from_slice(trailer);
        body.extend_from_slice(b"\r\n");
        assert_eq!(
            err(&body),
            ChunkError::BadTrailer,
            "{:?}",
            String::from_utf8_lossy(trailer)
        );
    }
    // Names that merely start like a forbidden one are fine.
    assert!(ok(b"0\r\nContent-Length-X: 1\r\nHostname: a\r\n\r\n").0 > 0);
}

#[test]
fn trailer_limit() {
    let mut body = b"0\r\n".to_vec();
    let line = format!("X-Pad: {}\r\n", "p".repeat(100));
    while body.len() - 3 + line.len() + 2 <= MAX_TRAILER_BYTES as usize {
        body.extend_from_slice(line.as_bytes());
    }
    let fill = MAX_TRAILER_BYTES as usize - (body.len() - 3) - 2 - "X:\r\n".len();
    body.extend_from_slice(format!("X:{}\r\n", "q".repeat(fill)).as_bytes());
    body.extend_from_slice(b"\r\n");
    assert_eq!(body.len() - 3, MAX_TRAILER_BYTES as usize);
    assert!(one_shot(&body).1);
    body.insert(body.len() - 4, b'q');
    assert_eq!(one_shot(&body).0, Err(ChunkError::TrailerTooLarge));
}

#[test]
fn errors_are_sticky() {
    let mut d = ChunkedDecoder::new();
    assert_eq!(d.scan(b"zz"), Err(ChunkError::BadSize));
    assert_eq!(d.scan(b"0\r\n\r\n"), Err(ChunkError::BadSize));
    assert_eq!(d.scan(b""), Err(ChunkError::BadSize));
    assert!(!d.is_done());
}

#[test]
fn large_chunk_is_skipped_in_one_step() {
    let mut d = ChunkedDecoder::new();
    assert_eq!(d.scan(b"100000\r\n"), Ok(8));
    let data = vec![0u8; 0x100000];
    assert_eq!(d.scan(&data), Ok(data.len()));
    assert_eq!(d.data_bytes(), 0x100000);
    assert_eq!(d.scan(b"\r\n0\r\n\r\nnext"), Ok(7));
    assert!(d.is_done());
}

#[test]
fn smuggling_style_bodies() {
    // Chunk-size tricks that other parsers have read differently.
    assert_eq!(
        err(b"0000000000000000000000000000000000000000000000000000000000000000000000000001x"),
        ChunkError::BadSize
    );
    assert_eq!(err(b"1\r\nA\r\n0 \r\n\r\n"), ChunkError::BadSize);
    assert_eq!(err(b"2;\nxx\r\n"), ChunkError::BadExtension);
    assert_eq!(err(b"1\r\nA\r\n0\r\n\r\r\n"), ChunkError::BadTrailer);
    assert_eq!(err(b"1\r\nA\n0\r\n\r\n"), ChunkError::MissingCrlf);
}

#[test]
fn scan_with_reports_data_ranges() {
    let body = b"5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nT: v\r\n\r\nNEXT";
    for split in 0..=body.len() {
        let mut d = ChunkedDecoder::new();
        let mut data = Vec::new();
        let mut consumed = 0;
        for piece in [&body[..split], &body[split..]] {
            if d.is_done() {
                break;
            }
            consumed += d
                .scan_with(piece, |r| data.extend_from_slice(&piece[r]))
                .expect("valid body");
        }
        assert_eq!(data, b"hello world", "split at {split}");
        assert_eq!(consumed, body.len() - 4);
        assert!(d.is_done());
    }
}
