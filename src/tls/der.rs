//! The one X.509 field the server reports that rustls does not expose: a
//! certificate's `notAfter` (the expiry metric). A walk of four DER
//! headers, instead of an X.509 crate for one field (x509-parser brings a
//! dozen crates). Anything unexpected gives `None`, never a panic.

/// One DER element at the start of `b`: its tag, contents, and the rest.
fn element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&l, mut b) = b.split_first()?;
    let len = if l < 0x80 {
        l as usize
    } else {
        let n = (l & 0x7f) as usize;
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n].iter().fold(0usize, |a, &x| a << 8 | x as usize);
        b = &b[n..];
        len
    };
    if b.len() < len {
        return None;
    }
    Some((tag, &b[..len], &b[len..]))
}

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The `notAfter` of a DER certificate, in seconds since the Unix epoch.
pub(crate) fn not_after(cert: &[u8]) -> Option<i64> {
    let (t, cert, _) = element(cert)?;
    (t == SEQUENCE).then_some(())?;
    let (t, tbs, _) = element(cert)?;
    (t == SEQUENCE).then_some(())?;
    let (mut t, _, mut rest) = element(tbs)?;
    if t == 0xa0 {
        // [0] EXPLICIT version: the serial number follows.
        (t, _, rest) = element(rest)?;
    }
    (t == 0x02).then_some(())?; // serialNumber
    let (_, _, rest) = element(rest)?; // signature algorithm
    let (_, _, rest) = element(rest)?; // issuer
    let (t, validity, _) = element(rest)?;
    (t == SEQUENCE).then_some(())?;
    let (_, _, rest) = element(validity)?; // notBefore
    let (t, time, _) = element(rest)?;
    parse_time(t, time)
}

fn parse_time(tag: u8, s: &[u8]) -> Option<i64> {
    let digits = |b: &[u8]| -> Option<i64> {
        b.iter().try_fold(0i64, |a, &c| {
            c.is_ascii_digit().then(|| a * 10 + i64::from(c - b'0'))
        })
    };
    let (year, rest) = match tag {
        // RFC 5280 4.1.2.5.1: YY of 50 and above is 19YY.
        UTC_TIME if s.len() == 13 => {
            let yy = digits(&s[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        GENERALIZED_TIME if s.len() == 15 => (digits(&s[..4])?, &s[4..]),
        _ => return None,
    };
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let f = |i: usize| digits(&rest[i..i + 2]);
    let (month, day, h, m, sec) = (f(0)?, f(2)?, f(4)?, f(6)?, f(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        if body.len() < 0x80 {
            v.push(body.len() as u8);
        } else {
            v.extend([0x82, (body.len() >> 8) as u8, body.len() as u8]);
        }
        v.extend_from_slice(body);
        v
    }

    fn cert(version: bool, not_after: (u8, &[u8])) -> Vec<u8> {
        let mut tbs = Vec::new();
        if version {
            tbs.extend(tlv(0xa0, &tlv(0x02, &[2])));
        }
        tbs.extend(tlv(0x02, &[1, 2, 3]));
        tbs.extend(tlv(SEQUENCE, &tlv(0x06, &[1, 2])));
        tbs.extend(tlv(SEQUENCE, &[0u8; 200])); // a long issuer
        let mut validity = tlv(UTC_TIME, b"200101000000Z");
        validity.extend(tlv(not_after.0, not_after.1));
        tbs.extend(tlv(SEQUENCE, &validity));
        tlv(SEQUENCE, &tlv(SEQUENCE, &tbs))
    }

    #[test]
    fn reads_not_after_in_both_time_forms() {
        // 2030-06-15 12:30:45 UTC.
        let want = 1_907_757_045;
        assert_eq!(
            not_after(&cert(true, (UTC_TIME, b"300615123045Z"))),
            Some(want)
        );
        assert_eq!(
            not_after(&cert(false, (GENERALIZED_TIME, b"20300615123045Z"))),
            Some(want)
        );
        assert_eq!(
            not_after(&cert(true, (UTC_TIME, b"700101000000Z"))),
            Some(0)
        );
    }

    #[test]
    fn anything_else_is_none() {
        assert_eq!(not_after(&cert(true, (UTC_TIME, b"30061512304Z"))), None);
        assert_eq!(not_after(&cert(true, (0x05, b""))), None);
        assert_eq!(not_after(&cert(true, (UTC_TIME, b"301315123045Z"))), None);
        let c = cert(true, (UTC_TIME, b"300615123045Z"));
        for n in 0..c.len() {
            assert_eq!(not_after(&c[..n]), None, "cut at {n}");
        }
        assert_eq!(not_after(&[]), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
