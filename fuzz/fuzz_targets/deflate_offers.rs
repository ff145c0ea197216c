//! `Sec-WebSocket-Extensions` values as a client or a server might send
//! them, to the permessage-deflate negotiation in both roles. Checks: no
//! panic; an agreed configuration is within the RFC's ranges and what the
//! offer allowed; the server's answer is itself a valid offer-shaped value
//! that our client, having sent the same limits, accepts as agreed.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringws::proto::deflate::{self, ClientOffer, Mode, Policy};

#[derive(Arbitrary, Debug)]
struct Input {
    values: Vec<Vec<u8>>,
    dedicated: bool,
    window_bits: u8,
    client_window_bits: u8,
}

fuzz_target!(|input: Input| {
    let policy = Policy {
        mode: if input.dedicated { Mode::Dedicated } else { Mode::Shared },
        window_bits: input.window_bits,
        client_window_bits: input.client_window_bits,
    };
    let values = || input.values.iter().map(Vec::as_slice);
    // The client role sees the same bytes as an answer.
    let _ = ClientOffer::default().check_answer(values());
    let Some(a) = deflate::negotiate(values(), &policy) else {
        return;
    };
    let range = deflate::MIN_WINDOW_BITS..=deflate::MAX_WINDOW_BITS;
    assert!(range.contains(&a.server_max_window_bits), "{a:?}");
    assert!(range.contains(&a.client_max_window_bits), "{a:?}");
    if policy.mode == Mode::Shared {
        assert!(a.server_no_context_takeover && a.client_no_context_takeover);
    }
    // The offer that was taken, and the answer to it.
    let offer = deflate::offers(values())
        .filter_map(Result::ok)
        .find(|o| deflate::accept(o, &policy).ok() == Some(a))
        .expect("the agreed offer is among the valid ones");
    if let Some(n) = offer.server_max_window_bits {
        assert!(a.server_max_window_bits <= n);
    }
    if let Some(Some(n)) = offer.client_max_window_bits {
        assert!(a.client_max_window_bits <= n);
    }
    let answer = a.answer();
    let client = ClientOffer {
        server_no_context_takeover: offer.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover,
        server_max_window_bits: offer.server_max_window_bits.unwrap_or(deflate::MAX_WINDOW_BITS),
    };
    if offer.client_max_window_bits.is_some() {
        let back = client.check_answer([answer.as_bytes()]).expect("our answer is valid");
        assert_eq!(back, Some(a), "{answer}");
    }
});
