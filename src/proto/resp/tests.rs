//! The decoder and [`PubSub`], driven with byte literals.

use super::*;

fn b(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

fn bulk(s: &[u8]) -> Frame {
    Frame::Bulk(b(s))
}

/// The frames, the error if any, and what is left in the buffer, when
/// `pieces` arrive one after the other, with decode called until `Ok(None)`
/// after each.
fn decode_pieces(limits: RespLimits, pieces: &[&[u8]]) -> (Vec<Frame>, Option<RespError>, Vec<u8>) {
    let mut dec = Decoder::new(limits);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for p in pieces {
        buf.extend_from_slice(p);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e), buf.to_vec()),
            }
        }
    }
    (frames, None, buf.to_vec())
}

fn one(input: &[u8]) -> Result<Option<Frame>, RespError> {
    let mut buf = BytesMut::from(input);
    Decoder::new(RespLimits::default()).decode(&mut buf)
}

fn frame(input: &[u8]) -> Frame {
    let mut buf = BytesMut::from(input);
    let f = Decoder::new(RespLimits::default())
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(input)))
        .unwrap_or_else(|| panic!("{}: incomplete", String::from_utf8_lossy(input)));
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(input));
    f
}

/// Every type, RESP2 and RESP3, with the frame each decodes to.
fn every_type() -> Vec<(&'static [u8], Frame)> {
    vec![
        (b"+OK\r\n", Frame::Simple(b(b"OK"))),
        (b"+\r\n", Frame::Simple(Bytes::new())),
        (b"-ERR no\r\n", Frame::Error(b(b"ERR no"))),
        (b":0\r\n", Frame::Integer(0)),
        (b":-42\r\n", Frame::Integer(-42)),
        (b":+7\r\n", Frame::Integer(7)),
        (b":9223372036854775807\r\n", Frame::Integer(i64::MAX)),
        (b":-9223372036854775808\r\n", Frame::Integer(i64::MIN)),
        (b"$5\r\nhello\r\n", bulk(b"hello")),
        (b"$0\r\n\r\n", bulk(b"")),
        (b"$6\r\na\r\n\0\rb\r\n", bulk(b"a\r\n\0\rb")),
        (b"$-1\r\n", Frame::Null),
        (b"*-1\r\n", Frame::Null),
        (b"_\r\n", Frame::Null),
        (b"*0\r\n", Frame::Array(vec![])),
        (
            b"*3\r\n:1\r\n$1\r\nx\r\n$-1\r\n",
            Frame::Array(vec![Frame::Integer(1), bulk(b"x"), Frame::Null]),
        ),
        (b"#t\r\n", Frame::Boolean(true)),
        (b"#f\r\n", Frame::Boolean(false)),
        (b",1.5\r\n", Frame::Double(1.5)),
        (b",-2\r\n", Frame::Double(-2.0)),
        (b",1e3\r\n", Frame::Double(1000.0)),
        (b",inf\r\n", Frame::Double(f64::INFINITY)),
        (b",-inf\r\n", Frame::Double(f64::NEG_INFINITY)),
        (
            b"(3492890328409238509324850943850943825024385\r\n",
            Frame::BigNumber(b(b"3492890328409238509324850943850943825024385")),
        ),
        (b"(-1\r\n", Frame::BigNumber(b(b"-1"))),
        (
            b"!21\r\nSYNTAX invalid syntax\r\n",
            Frame::Error(b(b"SYNTAX invalid syntax")),
        ),
        (
            b"=15\r\ntxt:Some string\r\n",
            Frame::Verbatim {
                format: *b"txt",
                text: b(b"Some string"),
            },
        ),
        (
            b"=4\r\nmkd:\r\n",
            Frame::Verbatim {
                format: *b"mkd",
                text: Bytes::new(),
            },
        ),
        (
            b"%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n#f\r\n",
            Frame::Map(vec![
                (Frame::Simple(b(b"first")), Frame::Integer(1)),
                (bulk(b"second"), Frame::Boolean(false)),
            ]),
        ),
        (b"%0\r\n", Frame::Map(vec![])),
        (
            b"~3\r\n+a\r\n:2\r\n_\r\n",
            Frame::Set(vec![Frame::Simple(b(b"a")), Frame::Integer(2), Frame::Null]),
        ),
        (
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nhi!\r\n",
            Frame::Push(vec![bulk(b"message"), bulk(b"ch"), bulk(b"hi!")]),
        ),
        // Attributes are dropped, at the top and inside aggregates.
        (
            b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n:5\r\n",
            Frame::Integer(5),
        ),
        (
            b"*2\r\n|1\r\n+ttl\r\n:3\r\n$1\r\nk\r\n|0\r\n:9\r\n",
            Frame::Array(vec![bulk(b"k"), Frame::Integer(9)]),
        ),
        (
            b"*2\r\n*2\r\n:1\r\n*1\r\n%1\r\n:2\r\n~1\r\n#t\r\n*0\r\n",
            Frame::Array(vec![
                Frame::Array(vec![
                    Frame::Integer(1),
                    Frame::Array(vec![Frame::Map(vec![(
                        Frame::Integer(2),
                        Frame::Set(vec![Frame::Boolean(true)]),
                    )])]),
                ]),
                Frame::Array(vec![]),
            ]),
        ),
    ]
}

#[test]
fn every_type_decodes() {
    for (input, want) in every_type() {
        assert_eq!(frame(input), want, "{}", String::from_utf8_lossy(input));
    }
    // NaN is not equal to itself.
    assert!(matches!(frame(b",nan\r\n"), Frame::Double(d) if d.is_nan()));
}

#[test]
fn split_at_every_offset() {
    let mut input: Vec<u8> = every_type().iter().flat_map(|(i, _)| i.to_vec()).collect();
    // An incomplete frame at the end: left for the next read.
    input.extend_from_slice(b"*2\r\n$3\r\nabc\r\n$4\r\nab");
    let want: Vec<Frame> = every_type().into_iter().map(|(_, f)| f).collect();
    let whole = decode_pieces(RespLimits::default(), &[&input]);
    assert_eq!(whole.0, want);
    assert_eq!(whole.1, None);
    // The finished first element of the last frame is held by the decoder.
    assert_eq!(whole.2, b"$4\r\nab");
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        let got = decode_pieces(RespLimits::default(), &[a, b]);
        assert_eq!(got, whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(decode_pieces(RespLimits::default(), &bytes), whole);
    for n in [2, 3, 7, 64] {
        let pieces: Vec<&[u8]> = input.chunks(n).collect();
        assert_eq!(
            decode_pieces(RespLimits::default(), &pieces),
            whole,
            "{n} at a time"
        );
    }
}

#[test]
fn every_prefix_needs_more() {
    for (input, _) in every_type() {
        for n in 0..input.len() {
            let mut dec = Decoder::new(RespLimits::default());
            let mut buf = BytesMut::from(&input[..n]);
            assert_eq!(
                dec.decode(&mut buf),
                Ok(None),
                "{} cut at {n}",
                String::from_utf8_lossy(input)
            );
            buf.extend_from_slice(&input[n..]);
            assert!(dec.decode(&mut buf).unwrap().is_some());
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn payloads_are_not_copied() {
    let mut buf = BytesMut::with_capacity(4096);
    buf.extend_from_slice(b">3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$10\r\n0123456789\r\n+OK\r\n");
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.capacity();
    let mut dec = Decoder::new(RespLimits::default());
    let f = dec.decode(&mut buf).unwrap().unwrap();
    let Ok(PubSub::Message { channel, payload }) = PubSub::from_frame(f) else {
        panic!("not a message");
    };
    assert_eq!(&payload[..], b"0123456789");
    assert!(range.contains(&(payload.as_ptr() as usize)));
    assert!(range.contains(&(channel.as_ptr() as usize)));
    // The buffer goes on with what followed, in the same allocation.
    assert_eq!(&buf[..], b"+OK\r\n");
    assert!(range.contains(&(buf.as_ptr() as usize)));
    assert_eq!(dec.decode(&mut buf), Ok(Some(Frame::Simple(b(b"OK")))));
}

#[test]
fn several_frames_in_one_read() {
    let (frames, e, rest) = decode_pieces(
        RespLimits::default(),
        &[b":1\r\n:2\r\n+OK\r\n-ERR x\r\n$1\r\n"],
    );
    assert_eq!(
        frames,
        [
            Frame::Integer(1),
            Frame::Integer(2),
            Frame::Simple(b(b"OK")),
            Frame::Error(b(b"ERR x"))
        ]
    );
    assert_eq!((e, &rest[..]), (None, &b"$1\r\n"[..]));
}

#[test]
fn malformed() {
    use RespError::*;
    let cases: &[(&[u8], RespError)] = &[
        (b"x", BadType(b'x')),
        (b"\r\n", BadType(b'\r')),
        (b"*1\r\n?", BadType(b'?')),
        (b"OK\r\n", BadType(b'O')),
        // Missing or broken CRLF.
        (b"+OK\n", MissingCrlf),
        (b"+OK\rX", MissingCrlf),
        (b"+O\nK\r\n", MissingCrlf),
        (b":1\n", MissingCrlf),
        (b"$2\r\nabcd", MissingCrlf),
        (b"$2\r\nab\n\r", MissingCrlf),
        (b"$2\nab\r\n", MissingCrlf),
        (b"*1\r\n$1\r\nab\r\n", MissingCrlf),
        // Lengths.
        (b"$\r\n", BadLength),
        (b"$-2\r\n", BadLength),
        (b"$-0\r\n", BadLength),
        (b"$+1\r\n", BadLength),
        (b"$1.5\r\n", BadLength),
        (b"$ 1\r\n", BadLength),
        (b"$?\r\n", BadLength),
        (b"*?\r\n", BadLength),
        (b"*-2\r\n", BadLength),
        (b"!-1\r\n", BadLength),
        (b"=-1\r\n", BadLength),
        (b"%-1\r\n", BadLength),
        (b"~-1\r\n", BadLength),
        (b">-1\r\n", BadLength),
        (b"|-1\r\n", BadLength),
        // Overflow: past usize, and a line too long to be a length.
        (b"$18446744073709551616\r\n", BadLength),
        (b"*99999999999999999999\r\n", BadLength),
        (b"$000000000000000000001\r\n", BadLength),
        (b"$000000000000000000001", BadLength),
        // Integers.
        (b":\r\n", BadInteger),
        (b":-\r\n", BadInteger),
        (b":1a\r\n", BadInteger),
        (b":1.0\r\n", BadInteger),
        (b":9223372036854775808\r\n", BadInteger),
        (b":-9223372036854775809\r\n", BadInteger),
        (b":123456789012345678901", BadInteger),
        // RESP3 scalars.
        (b"#\r\n", BadBoolean),
        (b"#x\r\n", BadBoolean),
        (b"#tt", BadBoolean),
        (b"_x", BadNull),
        (b",\r\n", BadDouble),
        (b",1.2.3\r\n", BadDouble),
        (b",\xff\r\n", BadDouble),
        (b"(\r\n", BadBigNumber),
        (b"(12a\r\n", BadBigNumber),
        (b"(-\r\n", BadBigNumber),
        (b"=3\r\ntxt\r\n", BadVerbatim),
        (b"=5\r\ntxtx!\r\n", BadVerbatim),
    ];
    for &(input, want) in cases {
        assert_eq!(one(input), Err(want), "{}", String::from_utf8_lossy(input));
        assert!(!want.to_string().is_empty());
    }
}

#[test]
fn errors_stick() {
    let mut dec = Decoder::new(RespLimits::default());
    let mut buf = BytesMut::from(&b"*2\r\n:1\r\n:x\r\n"[..]);
    assert_eq!(dec.decode(&mut buf), Err(RespError::BadInteger));
    let mut good = BytesMut::from(&b"+OK\r\n"[..]);
    assert_eq!(dec.decode(&mut good), Err(RespError::BadInteger));
    assert_eq!(&good[..], b"+OK\r\n", "nothing consumed after an error");
}

fn small() -> RespLimits {
    RespLimits {
        max_bulk: 10,
        max_elements: 6,
        max_depth: 3,
        max_frame: 100,
    }
}

fn with(limits: RespLimits, input: &[u8]) -> Result<Option<Frame>, RespError> {
    let mut buf = BytesMut::from(input);
    Decoder::new(limits).decode(&mut buf)
}

#[test]
fn bulk_limit() {
    let l = small();
    let too_long = Err(RespError::StringTooLong { len: 11, max: 10 });
    assert_eq!(
        with(l, b"$10\r\n0123456789\r\n"),
        Ok(Some(bulk(b"0123456789")))
    );
    // Refused at the header, before any of the string is there.
    assert_eq!(with(l, b"$11\r\n"), too_long);
    assert_eq!(with(l, b"!11\r\n"), too_long);
    assert_eq!(with(l, b"=11\r\n"), too_long);
    // Lines: refused as soon as the text passes the limit, CRLF or not.
    assert_eq!(
        with(l, b"+0123456789\r\n"),
        Ok(Some(Frame::Simple(b(b"0123456789"))))
    );
    assert_eq!(with(l, b"+0123456789"), Ok(None));
    assert_eq!(with(l, b"+0123456789\r"), Ok(None));
    for input in [
        &b"+0123456789a"[..],
        b"-0123456789a\r\n",
        b"(12345678901",
        b",12345678901",
    ] {
        assert_eq!(
            with(l, input),
            Err(RespError::LineTooLong { max: 10 }),
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn huge_declared_lengths_reserve_nothing() {
    let limits = RespLimits {
        max_bulk: usize::MAX,
        max_elements: usize::MAX,
        max_depth: 16,
        max_frame: usize::MAX,
    };
    let mut dec = Decoder::new(limits);
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(b"*4000000000000\r\n$9000000000000000\r\nabc");
    // The same allocation, ending where it did: nothing reserved.
    let end = |b: &BytesMut| b.as_ptr() as usize + b.capacity();
    let before = end(&buf);
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert_eq!(end(&buf), before);
    assert_eq!(&buf[..], b"$9000000000000000\r\nabc");
    // A length that the frame's sum would overflow.
    let mut buf = BytesMut::from(&b"$18446744073709551615\r\n"[..]);
    assert_eq!(
        Decoder::new(limits).decode(&mut buf),
        Err(RespError::FrameTooLarge { max: usize::MAX })
    );
    // Counts near usize::MAX do not wrap (a map's count doubles).
    let mut buf = BytesMut::from(&b"%9223372036854775808\r\n"[..]);
    assert_eq!(
        Decoder::new(limits).decode(&mut buf),
        Err(RespError::TooManyElements { max: usize::MAX })
    );
    let mut buf = BytesMut::from(&b"*2\r\n*18446744073709551615\r\n"[..]);
    assert_eq!(
        Decoder::new(limits).decode(&mut buf),
        Err(RespError::TooManyElements { max: usize::MAX })
    );
}

#[test]
fn element_limit_over_the_frame() {
    let l = small();
    let many = Err(RespError::TooManyElements { max: 6 });
    assert!(with(l, b"*6\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n:6\r\n")
        .unwrap()
        .is_some());
    assert_eq!(with(l, b"*7\r\n"), many);
    // Nested aggregates count together: 2 + 3 + 2.
    assert_eq!(with(l, b"*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n"), many);
    // A map's entries count twice, and so do an attribute's.
    assert_eq!(with(l, b"%3\r\n"), Ok(None));
    assert_eq!(with(l, b"%4\r\n"), many);
    assert_eq!(with(l, b"|2\r\n:1\r\n:1\r\n:1\r\n:1\r\n*3\r\n"), many);
    // The count starts over with each frame.
    let input =
        b"*6\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n:6\r\n*6\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n:6\r\n";
    let (frames, e, _) = decode_pieces(l, &[input]);
    assert_eq!((frames.len(), e), (2, None));
}

#[test]
fn depth_limit() {
    let l = small();
    assert_eq!(
        with(l, b"*1\r\n*1\r\n*1\r\n:1\r\n"),
        Ok(Some(Frame::Array(vec![Frame::Array(vec![Frame::Array(
            vec![Frame::Integer(1)]
        )])])))
    );
    // An empty aggregate opens no level.
    assert!(with(l, b"*1\r\n*1\r\n*1\r\n*0\r\n").unwrap().is_some());
    let deep = Err(RespError::TooDeep { max: 3 });
    assert_eq!(with(l, b"*1\r\n*1\r\n*1\r\n*1\r\n"), deep);
    assert_eq!(
        with(l, b"*1\r\n*1\r\n|1\r\n*1\r\n"),
        deep,
        "attributes count"
    );
    assert_eq!(with(l, b">1\r\n%1\r\n~1\r\n*1\r\n"), deep);
    // The default keeps a frame nested without end out.
    let input = b"*1\r\n".repeat(100_000);
    assert_eq!(
        one(&input),
        Err(RespError::TooDeep {
            max: RespLimits::default().max_depth
        })
    );
}

#[test]
fn frame_limit() {
    let l = RespLimits {
        max_frame: 30,
        ..small()
    };
    // 4 + 3 * 8 = 28 bytes: in.
    let input = b"*3\r\n$2\r\nab\r\n$2\r\ncd\r\n$2\r\nef\r\n";
    assert!(with(l, input).unwrap().is_some());
    // A bulk that would pass it is refused at its header.
    let big = Err(RespError::FrameTooLarge { max: 30 });
    assert_eq!(with(l, b"*3\r\n$2\r\nab\r\n$2\r\ncd\r\n$4\r\n"), Ok(None));
    assert_eq!(with(l, b"*3\r\n$2\r\nab\r\n$2\r\ncd\r\n$5\r\n"), big);
    assert_eq!(
        with(l, &[&b"*6\r\n"[..], &b":100\r\n".repeat(6)].concat()),
        big
    );
    // Attributes count against the frame they precede.
    assert_eq!(
        with(l, b"|1\r\n:1\r\n$10\r\n0123456789\r\n$2\r\nab\r\n"),
        big
    );
    assert_eq!(with(l, b"$2\r\nab\r\n"), Ok(Some(bulk(b"ab"))));
    // The count starts over with each frame.
    let (frames, e, _) = decode_pieces(l, &[input, input, input]);
    assert_eq!((frames.len(), e), (3, None));
}

#[test]
fn long_line_in_small_reads_searched_once() {
    // Correctness of the resumed search: the CR found where the last read
    // ended, and a stray LF in a later read refused.
    let (f, e, _) = decode_pieces(RespLimits::default(), &[b"+abc", b"def", b"\r", b"\n"]);
    assert_eq!((f, e), (vec![Frame::Simple(b(b"abcdef"))], None));
    let (_, e, _) = decode_pieces(RespLimits::default(), &[b"+abc", b"d\nef\r\n"]);
    assert_eq!(e, Some(RespError::MissingCrlf));
}

#[test]
fn pubsub_resp3_and_resp2() {
    let cases: &[(&[u8], PubSub)] = &[
        (
            b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n",
            PubSub::Subscribed {
                channel: b(b"a"),
                count: 1,
            },
        ),
        (
            b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n",
            PubSub::Subscribed {
                channel: b(b"b"),
                count: 2,
            },
        ),
        (
            b">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$4\r\n\r\n\0\0\r\n",
            PubSub::Message {
                channel: b(b"a"),
                payload: b(b"\r\n\0\0"),
            },
        ),
        (
            b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$0\r\n\r\n",
            PubSub::Message {
                channel: b(b"a"),
                payload: Bytes::new(),
            },
        ),
        (
            b">3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n",
            PubSub::Unsubscribed {
                channel: Some(b(b"a")),
                count: 0,
            },
        ),
        (
            b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n",
            PubSub::Unsubscribed {
                channel: None,
                count: 0,
            },
        ),
        (
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n",
            PubSub::Pong(Bytes::new()),
        ),
        (b"*2\r\n$4\r\npong\r\n$2\r\nhi\r\n", PubSub::Pong(b(b"hi"))),
        (b"+PONG\r\n", PubSub::Pong(Bytes::new())),
    ];
    for (input, want) in cases {
        assert_eq!(
            PubSub::from_frame(frame(input)).as_ref(),
            Ok(want),
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn not_pubsub_comes_back() {
    for input in [
        &b"+OK\r\n"[..],
        b"-ERR x\r\n",
        b":1\r\n",
        b"$7\r\nmessage\r\n",
        b"*0\r\n",
        b"*2\r\n$7\r\nmessage\r\n$1\r\na\r\n",
        b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n:1\r\n",
        b"*3\r\n$7\r\nMESSAGE\r\n$1\r\na\r\n$1\r\nb\r\n",
        b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n$1\r\n1\r\n",
        b">4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$1\r\na\r\n$1\r\nb\r\n",
        b"~3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n",
        b"%1\r\n$7\r\nmessage\r\n$1\r\na\r\n",
    ] {
        let f = frame(input);
        assert_eq!(
            PubSub::from_frame(f.clone()),
            Err(f),
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn errors_display() {
    use RespError::*;
    let all = [
        BadType(b'x'),
        MissingCrlf,
        BadLength,
        BadInteger,
        BadDouble,
        BadBoolean,
        BadNull,
        BadBigNumber,
        BadVerbatim,
        StringTooLong { len: 11, max: 10 },
        LineTooLong { max: 10 },
        TooManyElements { max: 6 },
        TooDeep { max: 3 },
        FrameTooLarge { max: 100 },
    ];
    let texts: std::collections::HashSet<String> = all.iter().map(|e| e.to_string()).collect();
    assert_eq!(texts.len(), all.len(), "each its own message");
    assert!(texts.iter().all(|t| t.starts_with("RESP: ")));
    assert_eq!(
        BadType(b'x').to_string(),
        "RESP: no type starts with byte 0x78"
    );
}
