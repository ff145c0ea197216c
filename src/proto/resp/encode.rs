//! Commands as Redis reads them: an array of bulk strings, appended to the
//! caller's buffer. Every command the broker sends has a function here; any
//! other goes through [`encode_command`].
//!
//! Nothing here allocates but the caller's `Vec` growing: lengths are
//! formatted on the stack, and each argument is copied once, straight into
//! `out`.

/// Appends the command `args` (name first): `*<n>` then `$<len> <arg>` for
/// each, every part ending in CRLF. Reserves the whole command's length at
/// once.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    // 1 + 20 digits + CRLF per header, overestimated: one reserve, no
    // regrowth while a large argument is copied.
    out.reserve(args.iter().map(|a| a.len() + 25).sum::<usize>() + 25);
    header(out, b'*', args.len());
    for a in args {
        bulk(out, a);
    }
}

/// Appends the command `args`, for arguments held as anything that derefs
/// to bytes (`String`, `Bytes`, `Vec<u8>`): a batch of channels to
/// SUBSCRIBE, say. Grows `out` as it goes (the iterator is read once).
pub fn encode_command_iter<I>(out: &mut Vec<u8>, args: I)
where
    I: IntoIterator,
    I::IntoIter: ExactSizeIterator,
    I::Item: AsRef<[u8]>,
{
    let args = args.into_iter();
    header(out, b'*', args.len());
    for a in args {
        bulk(out, a.as_ref());
    }
}

/// `HELLO 3 [AUTH user pass] [SETNAME name]`: switches the connection to
/// RESP3 (pub/sub messages then arrive as pushes, and replies can be
/// interleaved with them on one connection), authenticating and naming it
/// in the same round trip. Redis's default user is `default`.
pub fn encode_hello(out: &mut Vec<u8>, auth: Option<(&[u8], &[u8])>, setname: Option<&[u8]>) {
    let mut args: [&[u8]; 7] = [b"HELLO", b"3", b"", b"", b"", b"", b""];
    let mut n = 2;
    if let Some((user, pass)) = auth {
        args[n..n + 3].copy_from_slice(&[b"AUTH", user, pass]);
        n += 3;
    }
    if let Some(name) = setname {
        args[n..n + 2].copy_from_slice(&[b"SETNAME", name]);
        n += 2;
    }
    encode_command(out, &args[..n]);
}

/// `AUTH [user] pass`: without a user, Redis's `requirepass` (the
/// `default` user); for a RESP2 connection, which does not send HELLO.
pub fn encode_auth(out: &mut Vec<u8>, user: Option<&[u8]>, pass: &[u8]) {
    match user {
        Some(user) => encode_command(out, &[b"AUTH", user, pass]),
        None => encode_command(out, &[b"AUTH", pass]),
    }
}

/// `PUBLISH channel payload`; the payload, any bytes, is copied once.
pub fn encode_publish(out: &mut Vec<u8>, channel: &[u8], payload: &[u8]) {
    encode_publish_parts(out, channel, &[payload]);
}

/// `PUBLISH channel payload` with the payload in pieces, sent as one bulk
/// string (their concatenation): the broker's envelope and the WebSocket
/// frame after it are copied once each, into `out`, never joined first.
pub fn encode_publish_parts(out: &mut Vec<u8>, channel: &[u8], parts: &[&[u8]]) {
    encode_publish_pieces(out, &[channel], parts);
}

/// `PUBLISH channel payload` with both the channel and the payload in
/// pieces: the broker's channel prefix and the topic, the envelope and the
/// frame, each copied once into `out`.
pub fn encode_publish_pieces(out: &mut Vec<u8>, channel: &[&[u8]], parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let clen: usize = channel.iter().map(|p| p.len()).sum();
    // The framing is at most 67 bytes (two 20-digit lengths): one reserve,
    // no regrowth while the payload is copied.
    out.reserve(len + clen + 68);
    header(out, b'*', 3);
    bulk(out, b"PUBLISH");
    header(out, b'$', clen);
    for c in channel {
        out.extend_from_slice(c);
    }
    out.extend_from_slice(b"\r\n");
    header(out, b'$', len);
    for p in parts {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(b"\r\n");
}

/// `SUBSCRIBE ch...`: many channels in one command, each confirmed by its
/// own [`super::PubSub::Subscribed`]. Redis refuses a SUBSCRIBE without
/// channels; the caller sends none then.
pub fn encode_subscribe<I>(out: &mut Vec<u8>, channels: I)
where
    I: IntoIterator,
    I::IntoIter: ExactSizeIterator,
    I::Item: AsRef<[u8]>,
{
    prefixed(out, b"SUBSCRIBE", channels);
}

/// `UNSUBSCRIBE ch...`: many channels in one command, each confirmed by its
/// own [`super::PubSub::Unsubscribed`]. Without channels, every
/// subscription of the connection is left.
pub fn encode_unsubscribe<I>(out: &mut Vec<u8>, channels: I)
where
    I: IntoIterator,
    I::IntoIter: ExactSizeIterator,
    I::Item: AsRef<[u8]>,
{
    prefixed(out, b"UNSUBSCRIBE", channels);
}

/// `PING [message]`. In RESP2 a subscribed connection answers with an
/// array, `pong` and the message; otherwise `+PONG`, or the message as a
/// bulk string.
pub fn encode_ping(out: &mut Vec<u8>, message: Option<&[u8]>) {
    match message {
        Some(m) => encode_command(out, &[b"PING", m]),
        None => encode_command(out, &[b"PING"]),
    }
}

/// `SENTINEL get-master-addr-by-name name`, to a Sentinel: answered with an
/// array of the master's host and port (bulk strings), or a null if the
/// Sentinel knows no master by that name.
pub fn encode_sentinel_master_addr(out: &mut Vec<u8>, master: &[u8]) {
    encode_command(out, &[b"SENTINEL", b"get-master-addr-by-name", master]);
}

/// `CLIENT SETNAME name`, so that `CLIENT LIST` shows which node and which
/// of its connections this is. Redis refuses spaces in the name.
pub fn encode_client_setname(out: &mut Vec<u8>, name: &[u8]) {
    encode_command(out, &[b"CLIENT", b"SETNAME", name]);
}

/// A command named `name` whose arguments are `args`.
fn prefixed<I>(out: &mut Vec<u8>, name: &[u8], args: I)
where
    I: IntoIterator,
    I::IntoIter: ExactSizeIterator,
    I::Item: AsRef<[u8]>,
{
    let args = args.into_iter();
    header(out, b'*', args.len() + 1);
    bulk(out, name);
    for a in args {
        bulk(out, a.as_ref());
    }
}

/// One bulk string: `$<len>\r\n<bytes>\r\n`.
fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    header(out, b'$', b.len());
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

/// `<prefix><n>\r\n`, the digits formatted on the stack.
fn header(out: &mut Vec<u8>, prefix: u8, n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push(prefix);
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: impl FnOnce(&mut Vec<u8>)) -> String {
        // Appends: what the buffer held stays in front.
        let mut out = b"<".to_vec();
        f(&mut out);
        assert_eq!(out[0], b'<');
        String::from_utf8(out[1..].to_vec()).unwrap()
    }

    #[test]
    fn commands() {
        assert_eq!(
            enc(|o| encode_command(o, &[b"GET", b"k"])),
            "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
        assert_eq!(enc(|o| encode_command(o, &[])), "*0\r\n");
        assert_eq!(
            enc(|o| encode_command(o, &[b""])),
            "*1\r\n$0\r\n\r\n",
            "an empty argument"
        );
        let owned = vec![String::from("SET"), String::from("k"), String::from("v")];
        assert_eq!(
            enc(|o| encode_command_iter(o, &owned)),
            "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
        );
    }

    #[test]
    fn lengths_in_decimal() {
        for n in [0usize, 1, 9, 10, 99, 100, 12345, usize::MAX] {
            let mut out = Vec::new();
            header(&mut out, b'$', n);
            assert_eq!(out, format!("${n}\r\n").as_bytes());
        }
    }

    #[test]
    fn hello_and_auth() {
        assert_eq!(
            enc(|o| encode_hello(o, None, None)),
            "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"
        );
        assert_eq!(
            enc(|o| encode_hello(o, Some((b"default", b"pw")), None)),
            "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$2\r\npw\r\n"
        );
        assert_eq!(
            enc(|o| encode_hello(o, Some((b"u", b"p")), Some(b"node-1"))),
            "*7\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$1\r\np\r\n$7\r\nSETNAME\r\n$6\r\nnode-1\r\n"
        );
        assert_eq!(
            enc(|o| encode_hello(o, None, Some(b"n"))),
            "*4\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$7\r\nSETNAME\r\n$1\r\nn\r\n"
        );
        assert_eq!(
            enc(|o| encode_auth(o, None, b"pw")),
            "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"
        );
        assert_eq!(
            enc(|o| encode_auth(o, Some(b"u"), b"pw")),
            "*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$2\r\npw\r\n"
        );
    }

    #[test]
    fn publish_binary_once() {
        let payload = b"a\r\n\0b";
        assert_eq!(
            enc(|o| encode_publish(o, b"ch", payload)),
            "*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$5\r\na\r\n\0b\r\n"
        );
        // In parts: one bulk string of their concatenation.
        assert_eq!(
            enc(|o| encode_publish_parts(o, b"ch", &[b"a\r", b"", b"\n\0b"])),
            enc(|o| encode_publish(o, b"ch", payload))
        );
        // A large payload: one reservation, no regrowth while copying.
        let big = vec![7u8; 100 << 10];
        let mut out = Vec::new();
        encode_publish(&mut out, b"ch", &big);
        let cap = out.capacity();
        let head = b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$102400\r\n";
        assert_eq!(&out[..head.len()], head);
        assert_eq!(&out[head.len()..out.len() - 2], &big[..]);
        assert!(out.ends_with(b"\r\n") && cap < big.len() + 128);
    }

    #[test]
    fn subscriptions_batched() {
        assert_eq!(
            enc(|o| encode_subscribe(o, [&b"a"[..], b"bc"])),
            "*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$2\r\nbc\r\n"
        );
        let topics: Vec<bytes::Bytes> = (0..100)
            .map(|i| bytes::Bytes::from(format!("t{i}")))
            .collect();
        let s = enc(|o| encode_unsubscribe(o, &topics));
        assert!(s.starts_with("*101\r\n$11\r\nUNSUBSCRIBE\r\n$2\r\nt0\r\n"));
        assert!(s.ends_with("$3\r\nt99\r\n"));
        assert_eq!(
            enc(|o| encode_unsubscribe(o, std::iter::empty::<&[u8]>())),
            "*1\r\n$11\r\nUNSUBSCRIBE\r\n"
        );
    }

    #[test]
    fn other_helpers() {
        assert_eq!(enc(|o| encode_ping(o, None)), "*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            enc(|o| encode_ping(o, Some(b"x"))),
            "*2\r\n$4\r\nPING\r\n$1\r\nx\r\n"
        );
        assert_eq!(
            enc(|o| encode_sentinel_master_addr(o, b"mymaster")),
            "*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n"
        );
        assert_eq!(
            enc(|o| encode_client_setname(o, b"ringws")),
            "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$6\r\nringws\r\n"
        );
    }
}
