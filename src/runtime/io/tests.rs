//! Unit tests of the loop's bookkeeping.

use super::write::{MAX_SPARE_LARGE, MAX_SPARE_LARGE_BYTES, MAX_SPARE_SMALL_BYTES};
use super::*;

fn new_io() -> Io {
    let pool = Pool::new(1024, 4).unwrap();
    let backend = Backend::Epoll(epoll::Epoll::new().unwrap());
    let cfg = IoConfig {
        max_backpressure: 1 << 20,
        write_timeout: Duration::from_secs(1),
        backlog: 16,
    };
    Io::new(backend, pool, cfg)
}

/// As many connections as send at once must find a spare batch when the
/// next turn comes, or every turn allocates again (see
/// `MAX_SPARE_BATCHES`); large batches are kept only in small numbers.
#[test]
fn spare_batches_cover_concurrent_senders_and_bound_large_ones() {
    let mut io = new_io();
    for _ in 0..1000 {
        io.put_batch(Box::default());
    }
    assert_eq!(io.spares.len(), 1000);

    let mut io = new_io();
    for _ in 0..100 {
        let mut b = Box::<WriteBatch>::default();
        b.hdr.reserve(MAX_SPARE_SMALL_BYTES);
        io.put_batch(b);
    }
    assert_eq!(io.spares.len(), MAX_SPARE_LARGE);
    let mut huge = Box::<WriteBatch>::default();
    huge.hdr.reserve(MAX_SPARE_LARGE_BYTES);
    io.spares.pop();
    io.put_batch(huge);
    assert_eq!(io.spares.len(), MAX_SPARE_LARGE - 1);
}

#[test]
fn peer_addresses_pack_and_unpack() {
    let mut io = new_io();
    let id = io.alloc(Fd::Raw(-1));
    for a in [
        "1.2.3.4:5",
        "255.255.255.255:65535",
        "0.0.0.0:0",
        "[::1]:9",
        "[fe80::1]:65535",
    ] {
        let a: SocketAddr = a.parse().unwrap();
        io.set_peer(id.slot, Some(a));
        assert_eq!(io.get_peer(id.slot), Some(a));
    }
    io.set_peer(id.slot, None);
    assert_eq!(io.get_peer(id.slot), None);
    assert!(io.peers_v6.is_empty());
}

/// What an idle connection costs this layer: its slot, its timer node
/// and its peer address (`scripts/idle-memory.sh` measures the whole).
#[test]
fn a_socket_slot_stays_small() {
    let slot = std::mem::size_of::<Sock>() + std::mem::size_of::<PackedPeer>();
    eprintln!("socket slot {slot} bytes");
    assert!(slot <= 48, "socket slot grew to {slot} bytes");
}
