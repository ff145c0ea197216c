//! What each benchmark event carries, and the checks of its deliveries:
//! sans-IO, bytes in and values out.
//!
//! An event's `data` is a string the API takes as it is and the gateway
//! sends on inside the event's JSON, escaped as a JSON string. So it holds
//! only characters JSON never escapes (lower-case hex and letters), and a
//! subscriber finds it in the delivered message by its marker alone, with
//! no JSON parse per delivery:
//!
//! ```text
//! ~lgp CCCCCCCC PPPP SSSSSSSS IIIIIIIIIIIIIIII AAAAAAAAAAAAAAAA abcdefgh…
//!      channel  pub  sequence intended send    actual send      padding up to --size
//! ```
//!
//! without the spaces: fixed-width lower-case hex, the times in
//! nanoseconds since the run started (publishers and subscribers share
//! one process and one clock). The padding is a fixed pattern, compared
//! whole, and must be followed by the string's closing quote: a delivery
//! truncated, extended or altered is caught.

/// What every event's data starts with; `~` is rare in Pusher messages and
/// never escaped.
pub(super) const MARKER: &[u8; 4] = b"~lgp";

/// The marker and the fixed-width fields: the smallest `--size`.
pub(super) const HEAD: usize = MARKER.len() + 8 + 4 + 8 + 16 + 16;

/// Most sequence gaps one subscriber remembers (see [`Order`]).
const MAX_GAPS: usize = 4096;

/// The fields of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    /// The channel's number (`bench-<k>`).
    pub channel: u32,
    /// The publisher's number.
    pub publisher: u16,
    /// The publisher's sequence number on this channel, from 0.
    pub seq: u32,
    /// When the publisher meant to send it (rate mode: the schedule's
    /// time; closed loop: the actual time), ns since the run started.
    pub intended: u64,
    /// When it actually sent it.
    pub actual: u64,
}

/// The padding byte at offset `i` of an event's data.
fn pad(i: usize) -> u8 {
    b'a' + (i % 26) as u8
}

/// The data of a `size`-byte event, padding included: the fields are
/// overwritten by [`encode`] (`size` at least [`HEAD`]).
pub(super) fn template(size: usize) -> Vec<u8> {
    (0..size).map(pad).collect()
}

fn push_hex(out: &mut Vec<u8>, v: u64, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for k in (0..digits).rev() {
        out.push(HEX[((v >> (4 * k)) & 0xf) as usize]);
    }
}

/// Appends the data of event `s` to `out`: the fields, then the padding of
/// `template` up to its length.
pub(super) fn encode(s: &Stamp, template: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(MARKER);
    push_hex(out, u64::from(s.channel), 8);
    push_hex(out, u64::from(s.publisher), 4);
    push_hex(out, u64::from(s.seq), 8);
    push_hex(out, s.intended, 16);
    push_hex(out, s.actual, 16);
    out.extend_from_slice(&template[HEAD..]);
}

/// Where the marker starts in `msg`, if it is there: a scan for `~` (a
/// byte the rest of a Pusher message seldom holds), then a comparison.
pub(super) fn find(msg: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = msg[from..].iter().position(|&b| b == MARKER[0]) {
        let at = from + i;
        if msg[at..].starts_with(MARKER) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

fn hex(b: &[u8]) -> Option<u64> {
    b.iter().try_fold(0u64, |v, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some(v << 4 | u64::from(d))
    })
}

/// Why a delivery's data is not an event of this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Malformed {
    /// Shorter than the event, or its fields are not hex.
    Fields,
    /// The padding differs, or the string does not end where it should.
    Padding,
}

/// Reads the event whose marker is at `at` in the delivered message
/// `msg`: its fields, with the padding compared against `template` and the
/// closing quote of the JSON string right after it.
pub(super) fn parse(msg: &[u8], at: usize, template: &[u8]) -> Result<Stamp, Malformed> {
    let d = msg.get(at..at + HEAD).ok_or(Malformed::Fields)?;
    let field = |from: usize, len: usize| hex(&d[from..from + len]).ok_or(Malformed::Fields);
    let m = MARKER.len();
    let s = Stamp {
        channel: field(m, 8)? as u32,
        publisher: field(m + 8, 4)? as u16,
        seq: field(m + 12, 8)? as u32,
        intended: field(m + 20, 16)?,
        actual: field(m + 36, 16)?,
    };
    let end = at + template.len();
    if msg.get(at + HEAD..end) != Some(&template[HEAD..]) || msg.get(end) != Some(&b'"') {
        return Err(Malformed::Padding);
    }
    Ok(s)
}

/// The name of the event a Pusher message carries: the string after
/// `"event":`, as servers send it (compact JSON, no escapes in the names
/// of the protocol's own events).
pub(super) fn event_name(msg: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"event\":";
    let at = msg.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &msg[at..];
    let open = rest.iter().position(|&b| b == b'"')?;
    if !rest[..open].iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let name = &rest[open + 1..];
    let close = name.iter().position(|&b| b == b'"')?;
    Some(&name[..close])
}

/// The socket id in a `pusher:connection_established` message: the digits
/// and dot after `socket_id` (`\d+\.\d+`), wherever the escaping of the
/// `data` string puts them.
pub(super) fn socket_id(msg: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"socket_id";
    let at = msg.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &msg[at..];
    let start = rest.iter().position(u8::is_ascii_digit)?;
    // Only the separators of a JSON key and string may come between.
    if !rest[..start]
        .iter()
        .all(|b| matches!(b, b'"' | b'\\' | b':' | b' '))
    {
        return None;
    }
    let id = &rest[start..];
    let len = id
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'.'))
        .unwrap_or(id.len());
    std::str::from_utf8(&id[..len]).ok()
}

/// How a delivery stands against those before it from the same publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arrival {
    /// The next one expected, or past a gap (the events skipped are
    /// remembered as gaps).
    New,
    /// One skipped earlier, arriving late: reordered.
    Late,
    /// Seen already.
    Duplicate,
}

/// One subscriber's view of each publisher's sequence on its channel.
///
/// An event past the next expected one leaves a gap: those skipped are
/// remembered, so one of them arriving later is told from a duplicate
/// (reordered, not repeated). At most [`MAX_GAPS`] are remembered: past
/// that, a late one is taken for a duplicate, an error either way. What
/// never arrives is counted by the caller, from how many events were
/// published and how many [`Arrival::New`] and [`Arrival::Late`] came.
pub(super) struct Order {
    next: Vec<u32>,
    gaps: Vec<(u16, u32)>,
}

impl Order {
    /// Nothing seen yet from any of `publishers`.
    pub fn new(publishers: usize) -> Order {
        Order {
            next: vec![0; publishers],
            gaps: Vec::new(),
        }
    }

    /// Event `seq` of `publisher` (which must be below the number given to
    /// [`Order::new`]) arrived.
    pub fn arrive(&mut self, publisher: u16, seq: u32) -> Arrival {
        let next = &mut self.next[usize::from(publisher)];
        if seq >= *next {
            let room = MAX_GAPS - self.gaps.len();
            let skipped = (seq - *next) as usize;
            self.gaps
                .extend((*next..seq).take(room.min(skipped)).map(|s| (publisher, s)));
            *next = seq + 1;
            return Arrival::New;
        }
        match self.gaps.iter().position(|&g| g == (publisher, seq)) {
            Some(i) => {
                self.gaps.swap_remove(i);
                Arrival::Late
            }
            None => Arrival::Duplicate,
        }
    }

    /// The next sequence number expected of `publisher`.
    pub fn expected(&self, publisher: u16) -> u32 {
        self.next[usize::from(publisher)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> Stamp {
        Stamp {
            channel: 7,
            publisher: 3,
            seq: 0xdead_beef,
            intended: 123_456_789,
            actual: u64::MAX,
        }
    }

    #[test]
    fn round_trip_inside_a_pusher_message() {
        let t = template(80);
        let mut data = Vec::new();
        encode(&stamp(), &t, &mut data);
        assert_eq!(data.len(), 80);
        let msg = [
            b"{\"event\":\"bench\",\"data\":\"".as_slice(),
            &data,
            b"\",\"channel\":\"bench-7\"}",
        ]
        .concat();
        let at = find(&msg).unwrap();
        assert_eq!(at, 25);
        assert_eq!(parse(&msg, at, &t), Ok(stamp()));
        assert_eq!(event_name(&msg), Some(b"bench".as_slice()));
    }

    #[test]
    fn every_length_is_checked() {
        let t = template(HEAD + 10);
        let mut data = Vec::new();
        encode(&stamp(), &t, &mut data);
        let whole = [b"\"".as_slice(), &data, b"\""].concat();
        assert_eq!(parse(&whole, 1, &t), Ok(stamp()));
        // Cut anywhere, or one byte longer, and it is refused.
        for cut in 1..whole.len() - 1 {
            let short = [&whole[..cut], b"\"".as_slice()].concat();
            assert!(parse(&short, 1, &t).is_err(), "cut at {cut}");
        }
        let long = [&whole[..whole.len() - 1], b"a\"".as_slice()].concat();
        assert_eq!(parse(&long, 1, &t), Err(Malformed::Padding));
        let mut bad = whole.clone();
        bad[HEAD + 3] = b'A';
        assert_eq!(parse(&bad, 1, &t), Err(Malformed::Padding));
        let mut bad = whole;
        bad[6] = b'g';
        assert_eq!(parse(&bad, 1, &t), Err(Malformed::Fields));
    }

    #[test]
    fn marker_after_false_starts() {
        assert_eq!(find(b"~l~lg~lgp"), Some(5));
        assert_eq!(find(b"~lg"), None);
        assert_eq!(find(b""), None);
    }

    #[test]
    fn socket_id_in_escaped_data() {
        let m = br#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":120}"}"#;
        assert_eq!(socket_id(m), Some("123.456"));
        assert_eq!(
            event_name(m),
            Some(b"pusher:connection_established".as_slice())
        );
        assert_eq!(socket_id(br#"{"socket_id": 1.2}"#), Some("1.2"));
        assert_eq!(socket_id(br#"{"socket_id":"x1.2"}"#), None);
        assert_eq!(
            event_name(br#"{"event": "pusher:ping"}"#),
            Some(b"pusher:ping".as_slice())
        );
        assert_eq!(event_name(br#"{"event":1}"#), None);
    }

    #[test]
    fn order_tells_late_from_duplicate() {
        let mut o = Order::new(2);
        assert_eq!(o.arrive(0, 0), Arrival::New);
        assert_eq!(o.arrive(1, 0), Arrival::New);
        assert_eq!(o.arrive(0, 3), Arrival::New); // 1 and 2 skipped
        assert_eq!(o.arrive(0, 2), Arrival::Late);
        assert_eq!(o.arrive(0, 2), Arrival::Duplicate);
        assert_eq!(o.arrive(0, 3), Arrival::Duplicate);
        assert_eq!(o.arrive(0, 0), Arrival::Duplicate);
        assert_eq!(o.arrive(0, 1), Arrival::Late);
        assert_eq!((o.expected(0), o.expected(1)), (4, 1));
    }

    #[test]
    fn gaps_are_bounded() {
        let mut o = Order::new(1);
        assert_eq!(o.arrive(0, 1_000_000), Arrival::New);
        assert_eq!(o.gaps.len(), MAX_GAPS);
        assert_eq!(o.arrive(0, 0), Arrival::Late);
        // Past what is remembered: taken for a duplicate.
        assert_eq!(o.arrive(0, 999_999), Arrival::Duplicate);
    }
}
