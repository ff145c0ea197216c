//! The ceiling of a fan-out on this machine: what one core can deliver when
//! each delivery is one small send to its own loopback socket and nothing
//! else is done. `scripts/pusher-bench.sh` runs it beside the Pusher
//! servers' fan-out, whose load has exactly that shape: one publisher with
//! one request in flight, one channel, N subscribers. No server can coalesce
//! two events into one write there (the next event is not sent before the
//! API has answered the last), so every delivery costs at least one send, and
//! on loopback the sender's core also runs the receiving socket's TCP input.
//!
//! Two threads, no WebSocket or HTTP parsing at all:
//! * the "server" (pinned to `--server-cpu`, default 0) holds N accepted
//!   sockets and a control socket; per round it queues one `--size`-byte
//!   send to each of the N sockets and a 1-byte answer on the control socket,
//!   then waits for the next 1-byte request there, all in one
//!   `io_uring_enter` (registered files, one frame buffer shared by all
//!   sends);
//! * the "clients" (pinned to `--client-cpu`, default 1) drain the N sockets
//!   on io_uring (multishot receives into provided buffers, as `loadgen`'s
//!   clients read) and answer each answer with the next request at once, as a
//!   closed-loop publisher does.
//!
//! It prints deliveries/s in the window (after `--warmup`) and each thread's
//! CPU share, checks that every byte sent arrived, and with `--json FILE`
//! writes `{"deliveries_per_sec": ..}` for the bench script.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types, IoUring};

struct Args {
    subscribers: usize,
    size: usize,
    duration: Duration,
    warmup: Duration,
    server_cpu: usize,
    client_cpu: usize,
    json: Option<String>,
}

const USAGE: &str = "usage: peer-fanout-ceiling [--subscribers N] [--size BYTES] \
[--duration SECS] [--warmup SECS] [--server-cpu C] [--client-cpu C] [--json FILE]";

fn args() -> Args {
    let mut a = Args {
        subscribers: 1000,
        size: 151,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        server_cpu: 0,
        client_cpu: 1,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it
            .next()
            .unwrap_or_else(|| panic!("{flag}: a value\n{USAGE}"));
        let n = || -> usize { v.parse().unwrap_or_else(|_| panic!("{flag} {v}\n{USAGE}")) };
        // Seconds, or loadgen's forms: "10s", "500ms".
        let secs = || {
            let (num, scale) = match v.strip_suffix("ms") {
                Some(ms) => (ms, 1e-3),
                None => (v.strip_suffix('s').unwrap_or(&v), 1.0),
            };
            let x: f64 = num
                .parse()
                .unwrap_or_else(|_| panic!("{flag} {v}\n{USAGE}"));
            Duration::from_secs_f64(x * scale)
        };
        match flag.as_str() {
            "--subscribers" => a.subscribers = n(),
            "--size" => a.size = n(),
            "--duration" => a.duration = secs(),
            "--warmup" => a.warmup = secs(),
            "--server-cpu" => a.server_cpu = n(),
            "--client-cpu" => a.client_cpu = n(),
            "--json" => a.json = Some(v),
            _ => panic!("unknown flag {flag}\n{USAGE}"),
        }
    }
    assert!(a.subscribers >= 1 && a.size >= 2, "{USAGE}");
    a
}

/// Runs the calling thread on `cpu` only.
fn pin(cpu: usize) {
    // SAFETY: `set` is a plain bit set that CPU_ZERO/CPU_SET initialise, and
    // sched_setaffinity only reads it for the size passed.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        rc,
        0,
        "sched_setaffinity to CPU {cpu}: {}",
        io::Error::last_os_error()
    );
}

/// CPU seconds (user + system) of the calling thread.
fn thread_cpu() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// An unmasked text frame of `size` bytes in all, shaped like a Pusher
/// event (so the bytes on the wire look like the servers' frames). The
/// default, 151, is ringws-gateway's frame for `loadgen pusher`'s 100-byte
/// events: `{"event":"bench","channel":"bench-0","data":"…"}` and a 4-byte
/// header.
fn frame(size: usize) -> Vec<u8> {
    // Past 127 bytes the 16-bit length (not always minimal: only the size
    // matters here).
    let long = size > 127;
    let payload = size - if long { 4 } else { 2 };
    let mut f = vec![0x81];
    if long {
        f.push(126);
        f.extend_from_slice(&(payload as u16).to_be_bytes());
    } else {
        f.push(payload as u8);
    }
    let head = br#"{"event":"bench","channel":"bench-0","data":""#;
    let body: Vec<u8> = head
        .iter()
        .copied()
        .chain(std::iter::repeat(b'x'))
        .take(payload)
        .collect();
    f.extend_from_slice(&body);
    f
}

/// What the server thread measured.
struct Served {
    rounds_in_window: u64,
    window: Duration,
    cpu_share: f64,
    bytes: u64,
}

fn main() {
    let a = args();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    // Connected first, so each thread gets its end: the clients' N sockets
    // and the control socket's client end, the server's accepted ones.
    let mut clients = Vec::with_capacity(a.subscribers);
    let mut accepted = Vec::with_capacity(a.subscribers);
    for _ in 0..=a.subscribers {
        clients.push(TcpStream::connect(addr).expect("connect"));
        let (s, _) = listener.accept().expect("accept");
        s.set_nodelay(true).expect("nodelay");
        accepted.push(s);
    }
    let control_client = clients.pop().expect("control socket");
    control_client.set_nodelay(true).expect("nodelay");
    let control_server = accepted.pop().expect("control socket");

    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let client = {
        let (stop, received, cpu) = (stop.clone(), received.clone(), a.client_cpu);
        std::thread::spawn(move || run_clients(cpu, clients, control_client, &stop, &received))
    };
    let served = serve(&a, &accepted, control_server, &stop).expect("server thread");
    let client_cpu_share = client.join().expect("client thread");
    let got = received.load(Ordering::Acquire);
    let per_sec =
        served.rounds_in_window as f64 * a.subscribers as f64 / served.window.as_secs_f64();
    println!(
        "fan-out ceiling: {} subscribers x {} B: {:.0} deliveries/s (server thread {:.0} % of its core, clients {:.0} %)",
        a.subscribers,
        a.size,
        per_sec,
        served.cpu_share * 100.0,
        client_cpu_share * 100.0
    );
    if got != served.bytes {
        eprintln!(
            "peer-fanout-ceiling: sent {} bytes, {} arrived",
            served.bytes, got
        );
        std::process::exit(1);
    }
    if let Some(path) = a.json {
        let j = format!(
            "{{\"tool\": \"peer-fanout-ceiling\", \"subscribers\": {}, \"size\": {}, \"deliveries_per_sec\": {:.1}, \"server_cpu_share\": {:.3}, \"client_cpu_share\": {:.3}}}\n",
            a.subscribers, a.size, per_sec, served.cpu_share, client_cpu_share
        );
        std::fs::write(&path, j).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

/// A ring with room for a round (a submission per socket and two on the
/// control socket), `cq_factor` times that in completions, and `socks`
/// then `control` registered as files 0..=n.
fn ring_for(socks: &[TcpStream], control: &TcpStream, cq_factor: u32) -> io::Result<IoUring> {
    let entries = (socks.len() + 2).next_power_of_two() as u32;
    let ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(cq_factor * entries)
        .build(entries)?;
    let mut fds: Vec<i32> = socks.iter().map(|s| s.as_raw_fd()).collect();
    fds.push(control.as_raw_fd());
    ring.submitter().register_files(&fds)?;
    Ok(ring)
}

/// The server thread: rounds of N sends and one answer, until the window
/// ends; then tells the clients to stop once they have everything.
fn serve(
    a: &Args,
    socks: &[TcpStream],
    control: TcpStream,
    stop: &AtomicBool,
) -> io::Result<Served> {
    pin(a.server_cpu);
    let n = socks.len();
    // Before the ring, so that they outlive it (and any op still in it
    // when an error returns early).
    let frame = frame(a.size);
    let (answer, mut request) = ([1u8], [0u8]);
    let mut ring = ring_for(socks, &control, 2)?;
    let start = Instant::now();
    let (warm_end, end) = (start + a.warmup, start + a.warmup + a.duration);
    let (mut rounds, mut rounds_at_warm, mut cpu_at_warm) = (0u64, None, 0.0);
    let mut bytes = 0u64;
    loop {
        let now = Instant::now();
        if rounds_at_warm.is_none() && now >= warm_end {
            rounds_at_warm = Some(rounds);
            cpu_at_warm = thread_cpu();
        }
        if now >= end {
            break;
        }
        {
            let mut sq = ring.submission();
            for i in 0..n {
                let e =
                    opcode::Send::new(types::Fixed(i as u32), frame.as_ptr(), frame.len() as u32)
                        .build()
                        .user_data(i as u64);
                // SAFETY: `frame` outlives the round (we wait for every
                // completion below before touching it), and the queue has
                // room for n + 2 entries.
                unsafe { sq.push(&e).expect("room for a round") };
            }
            let ans = opcode::Send::new(types::Fixed(n as u32), answer.as_ptr(), 1)
                .build()
                .user_data(n as u64);
            let req = opcode::Recv::new(types::Fixed(n as u32), request.as_mut_ptr(), 1)
                .build()
                .user_data(n as u64 + 1);
            // SAFETY: both buffers live on this stack frame until the round's
            // completions have been reaped.
            unsafe {
                sq.push(&ans).expect("room for a round");
                sq.push(&req).expect("room for a round");
            }
        }
        ring.submit_and_wait(n + 2)?;
        let mut reaped = 0;
        while reaped < n + 2 {
            for c in ring.completion() {
                reaped += 1;
                let ud = c.user_data() as usize;
                let want = if ud < n { frame.len() as i32 } else { 1 };
                if c.result() != want {
                    return Err(io::Error::other(format!(
                        "op {ud}: {} (wanted {want})",
                        c.result()
                    )));
                }
            }
            if reaped < n + 2 {
                ring.submit_and_wait(1)?;
            }
        }
        bytes += (n * frame.len()) as u64;
        rounds += 1;
    }
    let window = start.elapsed().saturating_sub(a.warmup);
    let served = Served {
        rounds_in_window: rounds - rounds_at_warm.unwrap_or(0),
        window,
        cpu_share: (thread_cpu() - cpu_at_warm) / window.as_secs_f64(),
        bytes,
    };
    stop.store(true, Ordering::Release);
    // The clients' last request is left unread; closing the control socket
    // lets them see the end even if they are waiting on it.
    drop(control);
    Ok(served)
}

/// Provided buffers for the clients' multishot receives: a ring of
/// `COUNT` buffers of `LEN` bytes that the kernel picks from; each is given
/// back as soon as its completion is counted (the bytes are not looked at).
struct BufRing {
    /// `COUNT` slots of `io_uring_buf` (16 bytes: addr u64, len u32, bid
    /// u16; bytes 14..16 of slot 0 are the ring's tail).
    ring: *mut u8,
    mem: *mut u8,
    tail: u16,
}

impl BufRing {
    const COUNT: u16 = 4096;
    const LEN: usize = 2048;
    const GROUP: u16 = 0;

    fn new(ring: &IoUring) -> io::Result<BufRing> {
        let mut b = BufRing {
            ring: ringws_peers::map(Self::COUNT as usize * 16)?,
            mem: ringws_peers::map(Self::COUNT as usize * Self::LEN)?,
            tail: 0,
        };
        // SAFETY: the ring mapping is page-aligned, zeroed (tail 0, empty)
        // and never unmapped, so it outlives the registration.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                b.ring as u64,
                Self::COUNT,
                Self::GROUP,
                0,
            )?
        };
        for bid in 0..Self::COUNT {
            b.give(bid);
        }
        b.publish();
        Ok(b)
    }

    /// Puts buffer `bid` in the next slot; the kernel sees it after
    /// `publish`.
    fn give(&mut self, bid: u16) {
        let slot = (self.tail & (Self::COUNT - 1)) as usize;
        // SAFETY: `slot < COUNT`, so the 16 aligned bytes lie inside the ring
        // mapping; the kernel reads only slots between its head and the
        // published tail, and `bid` was taken out (its completion came), so
        // at most COUNT - 1 are published and this one is not read. Bytes
        // 14..16, the tail in slot 0, are left alone.
        unsafe {
            let e = self.ring.add(slot * 16);
            e.cast::<u64>()
                .write(self.mem as u64 + bid as u64 * Self::LEN as u64);
            e.add(8).cast::<u32>().write(Self::LEN as u32);
            e.add(12).cast::<u16>().write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the buffers given so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail is the 2-aligned u16 at byte 14 of the ring
        // mapping, which lives as long as the process; the release store
        // pairs with the kernel's acquire load of it.
        unsafe { AtomicU16::from_ptr(self.ring.add(14).cast()) }
            .store(self.tail, Ordering::Release);
    }
}

/// The clients' thread: drains every subscriber and answers each answer on
/// the control socket with the next request, on its own io_uring (a
/// multishot recv per socket into provided buffers, the way `loadgen`'s
/// clients read, and no parsing). Returns its CPU share until the server
/// stopped (warm-up included).
fn run_clients(
    cpu: usize,
    socks: Vec<TcpStream>,
    control: TcpStream,
    stop: &AtomicBool,
    received: &AtomicU64,
) -> f64 {
    pin(cpu);
    let t0 = (Instant::now(), thread_cpu());
    let n = socks.len();
    // Before the ring, so that they outlive it.
    let (mut answer, request) = ([0u8], [0u8]);
    let mut ring = ring_for(&socks, &control, 4).expect("io_uring setup");
    let mut bufs = BufRing::new(&ring).expect("a provided-buffer ring");
    let recv = |i: usize| {
        opcode::RecvMulti::new(types::Fixed(i as u32), BufRing::GROUP)
            .build()
            .user_data(i as u64)
    };
    let recv_answer = opcode::Recv::new(types::Fixed(n as u32), answer.as_mut_ptr(), 1)
        .build()
        .user_data(n as u64);
    let send_request = opcode::Send::new(types::Fixed(n as u32), request.as_ptr(), 1)
        .build()
        .user_data(u64::MAX);
    {
        let mut sq = ring.submission();
        for i in 0..n {
            // SAFETY: a multishot recv points to no memory of ours (the
            // kernel picks ring buffers); the queue has n + 2 entries.
            unsafe { sq.push(&recv(i)).expect("room") };
        }
        // SAFETY: `answer` and `request` outlive the ring (declared before
        // it).
        unsafe {
            sq.push(&recv_answer).expect("room");
            sq.push(&send_request).expect("room");
        }
    }
    let mut total = 0u64;
    let mut busy = None;
    let mut control_open = true;
    let mut quiet = 0;
    let mut rearm = Vec::new();
    let ts = types::Timespec::new().nsec(100_000_000);
    loop {
        if busy.is_none() && stop.load(Ordering::Acquire) {
            busy = Some((t0.0.elapsed(), thread_cpu()));
        }
        let args = types::SubmitArgs::new().timespec(&ts);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {
                if stop.load(Ordering::Acquire) {
                    // Nothing in 100 ms twice after the server stopped: all
                    // has arrived (the count is checked against what it
                    // sent).
                    quiet += 1;
                    if quiet >= 2 {
                        break;
                    }
                }
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => panic!("io_uring_enter: {e}"),
        }
        let mut next_request = false;
        for c in ring.completion() {
            let (ud, res, flags) = (c.user_data(), c.result(), c.flags());
            if ud == u64::MAX {
                if res != 1 {
                    control_open = false;
                }
            } else if ud == n as u64 {
                if res == 1 && control_open {
                    next_request = true;
                } else {
                    control_open = false;
                }
            } else {
                if let Some(bid) = cqueue::buffer_select(flags) {
                    bufs.give(bid);
                }
                if res > 0 {
                    total += res as u64;
                } else {
                    // -ENOBUFS ends the multishot until buffers come back;
                    // anything else is a broken subscriber.
                    assert_eq!(res, -libc::ENOBUFS, "subscriber {ud}: recv {res}");
                }
                if !cqueue::more(flags) {
                    rearm.push(ud as usize);
                }
            }
        }
        bufs.publish();
        let mut sq = ring.submission();
        if next_request {
            // SAFETY: as above.
            unsafe {
                sq.push(&send_request).expect("room");
                sq.push(&recv_answer).expect("room");
            }
        }
        for i in rearm.drain(..) {
            // SAFETY: as above; one recv per socket at most is armed.
            unsafe { sq.push(&recv(i)).expect("room") };
        }
    }
    received.store(total, Ordering::Release);
    let (wall, cpu) = busy.unwrap_or_else(|| (t0.0.elapsed(), thread_cpu()));
    (cpu - t0.1) / wall.as_secs_f64()
}
