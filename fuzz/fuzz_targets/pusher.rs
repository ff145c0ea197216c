//! The Pusher protocol parser (ringws-gateway's `protocol`): any bytes as a
//! client message. Checks: no panic; the limits hold; an accepted message
//! is well formed (its channel is valid, a client event's data is JSON that
//! relays and parses back as the same event); and every answer the server
//! would send, pusher:error included, is JSON. With no JSON library here,
//! the parser itself is the judge: a server message fed back to it parses
//! as JSON (it is refused only as an event a client may not send).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringws_gateway::protocol::{self, ClientMessage, Limits, ProtocolError};

const LIMITS: Limits = Limits {
    max_event_bytes: 4096,
    max_channel_len: 64,
    max_event_name_len: 48,
};

/// Room for any answer to a message within LIMITS, when fed back.
const ROOMY: Limits = Limits {
    max_event_bytes: 1 << 20,
    max_channel_len: 1 << 16,
    max_event_name_len: 1 << 16,
};

/// `out` is one JSON object whose event is `event`.
fn is_server_message(out: &str, event: &str) {
    assert_eq!(
        protocol::parse(out.as_bytes(), &ROOMY),
        Err(ProtocolError::UnknownEvent(event.to_owned())),
        "{out}"
    );
}

fuzz_target!(|data: &[u8]| {
    let msg = protocol::parse(data, &LIMITS);
    if data.len() > LIMITS.max_event_bytes {
        assert!(matches!(msg, Err(ProtocolError::TooLarge { .. })));
    }
    match msg {
        Ok(ClientMessage::Ping | ClientMessage::Pong) => {}
        Ok(ClientMessage::Subscribe {
            channel,
            channel_data,
            ..
        }) => {
            let kind = protocol::channel(&channel, LIMITS.max_channel_len).unwrap();
            is_server_message(
                &protocol::subscription_succeeded(&channel),
                "pusher_internal:subscription_succeeded",
            );
            if let Some(m) = channel_data.and_then(|cd| protocol::presence_member(&cd).ok()) {
                assert!(!m.user_id.is_empty());
                let info = m.user_info.as_deref();
                is_server_message(
                    &protocol::member_added(&channel, &m.user_id, info),
                    "pusher_internal:member_added",
                );
                let members = [(m.user_id.as_str(), info)];
                is_server_message(
                    &protocol::presence_subscription_succeeded(&channel, members.into_iter()),
                    "pusher_internal:subscription_succeeded",
                );
            }
            if kind.cache {
                is_server_message(&protocol::cache_miss(&channel), "pusher:cache_miss");
            }
        }
        Ok(ClientMessage::Unsubscribe { channel }) => {
            protocol::channel(&channel, LIMITS.max_channel_len).unwrap();
        }
        Ok(ClientMessage::Signin { user_data, .. }) => {
            if let Ok(id) = protocol::user_id_of(&user_data) {
                assert!(!id.is_empty());
            }
            is_server_message(
                &protocol::signin_success(&user_data),
                "pusher:signin_success",
            );
        }
        Ok(ClientMessage::Client {
            event,
            channel,
            data,
        }) => {
            assert!(event.starts_with("client-"));
            assert!(event.chars().count() <= LIMITS.max_event_name_len);
            protocol::channel(&channel, LIMITS.max_channel_len).unwrap();
            // Relayed, it is the same client event again.
            let out = protocol::client_event(&event, &channel, &data, Some("u"));
            let again = protocol::parse(out.as_bytes(), &ROOMY).unwrap();
            assert_eq!(
                again,
                ClientMessage::Client {
                    event,
                    channel,
                    data
                }
            );
        }
        Err(e) => is_server_message(&protocol::error(e.code(), &e.to_string()), "pusher:error"),
    }
    // The helpers take any text (bounded, so that six-byte escapes of
    // every byte, three times over, stay within ROOMY).
    if let Ok(s) = std::str::from_utf8(&data[..data.len().min(LIMITS.max_event_bytes)]) {
        let _ = protocol::channel(s, LIMITS.max_channel_len);
        if let Ok(m) = protocol::presence_member(s) {
            assert!(!m.user_id.is_empty());
        }
        let _ = protocol::user_id_of(s);
        is_server_message(&protocol::event("e", s, s, Some(s)), "e");
    }
});
