//! The broker thread's connections: making them (resolving, connecting
//! with backoff), their handshakes (AUTH, CLIENT SETNAME, ROLE, the first
//! SUBSCRIBEs), the timers that cut or retry them, and what a loss or a
//! return changes.

use super::*;

impl Thread {
    pub(super) fn new(
        opts: Redis,
        link: Arc<Link>,
        rx: mpsc::Receiver<Outgoing>,
        now: Instant,
    ) -> Thread {
        let limits = RespLimits {
            max_bulk: opts.max_message.saturating_add(opts.prefix.len() + 4096),
            max_frame: opts.max_message.saturating_mul(2).saturating_add(1 << 16),
            ..RespLimits::default()
        };
        let names = opts.urls.iter().map(RedisUrl::shard_name).collect();
        let shards = opts
            .urls
            .iter()
            .map(|u| Shard {
                url: u.clone(),
                label: u.to_string(),
                target: None,
                announced: None,
                publ: Conn::new(limits, now),
                sub: Conn::new(limits, now),
                sentinel: Conn::new(limits, now),
                next_sentinel: 0,
                last_error: "not connected yet".to_owned(),
                last_traffic: now,
                probe_sent: None,
                refused: 0,
            })
            .collect::<Vec<_>>();
        link.counts
            .instances
            .store(shards.len() as u64, Ordering::Relaxed);
        let probe_channel = format!("{}probe:{:016x}", opts.prefix, link.node).into_bytes();
        let mut interest = Interest::new(opts.linger);
        for t in link.listened() {
            interest.pin(t);
        }
        Thread {
            interest,
            prefix: opts.prefix.clone().into_bytes(),
            rng: link.node | 1,
            opts,
            link,
            rx,
            names,
            shards,
            socks: HashMap::new(),
            probe_channel,
            next_tick: now,
            stop_at: None,
            batch: Vec::new(),
            limits,
            ready: false,
            resolver: Resolver::new(),
        }
    }

    /// The wait before attempt `failures + 1`: doubling from the minimum
    /// to the maximum, then 75 % to 100 % of it at random.
    pub(super) fn backoff(&mut self, failures: u32) -> Duration {
        let d = self
            .opts
            .backoff_min
            .saturating_mul(1u32 << failures.min(20))
            .min(self.opts.backoff_max);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        d.mul_f64(0.75 + (self.rng % 1000) as f64 / 4000.0)
    }

    pub(super) fn conn(&mut self, s: usize, role: Role) -> &mut Conn {
        let sh = &mut self.shards[s];
        match role {
            Role::Pub => &mut sh.publ,
            Role::Sub => &mut sh.sub,
            Role::Sentinel => &mut sh.sentinel,
        }
    }

    /// Everything time-driven: connects due, deadlines, linger, probes.
    pub(super) fn tick(&mut self, io: &mut Io) {
        let now = io.now();
        if let Some(at) = self.stop_at {
            if now >= at {
                for &id in self.socks.keys() {
                    io.close(id);
                }
            }
            return;
        }
        for s in 0..self.shards.len() {
            self.tick_shard(io, s, now);
        }
        self.interest.expire(now);
        self.send_interest(io);
        self.update_ready(io);
    }

    /// Points instance `s` at the master a Sentinel named, once its
    /// address is known: at once for an address (what Sentinels announce
    /// unless their `resolve-hostnames` is on), else when the lookup ends.
    /// A name that does not resolve closes the Sentinel connection, whose
    /// next one asks for the master again.
    pub(super) fn resolve_announced(&mut self, io: &mut Io, s: usize) {
        let Some(hp) = self.shards[s].announced.clone() else {
            return;
        };
        match self.resolver.lookup(&hp) {
            None => {}
            Some(Ok(addr)) => {
                let sh = &mut self.shards[s];
                sh.announced = None;
                if sh.target != Some(addr) {
                    tracing::info!("broker: {}: the master is at {addr}", sh.label);
                }
                sh.target = Some(addr);
            }
            Some(Err(e)) => {
                self.shards[s].announced = None;
                let why = format!("cannot resolve the master {hp}: {e}");
                self.note_error(s, Role::Sentinel, &why);
                if let Some(id) = self.shards[s].sentinel.id() {
                    io.close(id);
                }
            }
        }
    }

    pub(super) fn tick_shard(&mut self, io: &mut Io, s: usize, now: Instant) {
        let due = |c: &Conn| matches!(c.state, State::Down { retry_at } if now >= retry_at);
        // Find the master, when a connection is due to reconnect.
        let sh = &self.shards[s];
        let wanted = sh.target.is_none() && (due(&sh.publ) || due(&sh.sub));
        // Names are looked up off this thread (`None`: not yet; the next
        // tick asks again).
        match sh.url.location.clone() {
            Location::Direct(a) if wanted => match self.resolver.lookup(&a) {
                None => {}
                Some(Ok(addr)) => self.shards[s].target = Some(addr),
                Some(Err(e)) => {
                    let why = format!("cannot resolve {a}: {e}");
                    self.fail_down(s, Role::Pub, now, &why);
                    self.fail_down(s, Role::Sub, now, &why);
                }
            },
            // The Sentinel connection is always kept: it finds the master
            // and hears of failovers.
            Location::Sentinel { sentinels, .. } if due(&sh.sentinel) => {
                let k = sh.next_sentinel % sentinels.len();
                match self.resolver.lookup(&sentinels[k]) {
                    None => {}
                    Some(Ok(addr)) => {
                        self.shards[s].next_sentinel += 1;
                        self.connect(io, s, Role::Sentinel, addr, now);
                    }
                    Some(Err(e)) => {
                        self.shards[s].next_sentinel += 1;
                        let why = format!("cannot resolve Sentinel {}: {e}", sentinels[k]);
                        self.fail_down(s, Role::Sentinel, now, &why);
                    }
                }
            }
            _ => {}
        }
        self.resolve_announced(io, s);
        for role in [Role::Pub, Role::Sub, Role::Sentinel] {
            let target = self.shards[s].target;
            let c = self.conn(s, role);
            let (state_due, addr) = (due(c), c.addr);
            match c.state {
                State::Down { .. } => {
                    if let (true, Some(t), false) = (state_due, target, role == Role::Sentinel) {
                        self.connect(io, s, role, t, now);
                    }
                }
                State::Opening { id, until } if now >= until => {
                    let why = format!("no answer within {:?}", self.opts.connect_timeout);
                    self.note_error(s, role, &why);
                    io.close(id);
                }
                State::Opening { id, .. } | State::Ready { id } => {
                    // A failover moved the master: leave the old one.
                    let moved = role != Role::Sentinel && target.is_some() && addr != target;
                    if moved {
                        self.note_error(s, role, "the master moved");
                        self.conn(s, role).moving = true;
                        io.close(id);
                    }
                }
            }
        }
        // The probe: publish to our own channel after a silence, and
        // reconnect if it does not come back.
        let sh = &mut self.shards[s];
        if let (Some(sub), Some(publ)) = (sh.sub.ready(), sh.publ.ready()) {
            match sh.probe_sent {
                None if now.duration_since(sh.last_traffic) >= self.opts.probe_interval => {
                    let payload = self.link.node.to_le_bytes();
                    let ch = &self.probe_channel;
                    io.send_with(publ, |out| resp::encode_publish(out, ch, &payload));
                    sh.publ.expect.push_back(Expect::Publish);
                    sh.probe_sent = Some(now);
                }
                Some(at) if now.duration_since(at) >= self.opts.probe_timeout => {
                    tracing::warn!(
                        "broker: {}: the probe did not come back within {:?}; subscribing again",
                        sh.label,
                        self.opts.probe_timeout
                    );
                    sh.last_error = "a probe did not come back".to_owned();
                    io.close(sub);
                }
                _ => {}
            }
        }
    }

    pub(super) fn connect(
        &mut self,
        io: &mut Io,
        s: usize,
        role: Role,
        addr: SocketAddr,
        now: Instant,
    ) {
        let until = now + self.opts.connect_timeout;
        let limits = self.limits;
        match io.connect(addr, None) {
            Ok(id) => {
                self.socks.insert(id, (s, role));
                if role == Role::Sub {
                    self.shards[s].refused = 0;
                }
                let c = self.conn(s, role);
                c.state = State::Opening { id, until };
                c.addr = Some(addr);
                c.input.clear();
                // The decoder keeps a half-read element and any error: a
                // new stream needs a new one.
                c.dec = Decoder::new(limits);
                c.expect.clear();
                c.batches.clear();
                c.initial = 0;
                c.hs_sent = false;
            }
            Err(e) => {
                let why = format!("cannot connect to {addr}: {e}");
                self.fail_down(s, role, now, &why);
            }
        }
    }

    pub(super) fn note_error(&mut self, s: usize, role: Role, why: &str) {
        let sh = &mut self.shards[s];
        sh.last_error = format!("{} connection: {why}", role.name());
    }

    /// A connection attempt failed before it had a socket.
    pub(super) fn fail_down(&mut self, s: usize, role: Role, now: Instant, why: &str) {
        let failures = self.conn(s, role).failures;
        let wait = self.backoff(failures);
        self.note_error(s, role, why);
        let label = self.shards[s].label.clone();
        let c = self.conn(s, role);
        c.failures = c.failures.saturating_add(1);
        c.state = State::Down {
            retry_at: now + wait,
        };
        log_failure(&label, role, c.failures, why, wait);
    }

    /// The connection is up at the TCP level: send its handshake.
    pub(super) fn handshake(&mut self, io: &mut Io, s: usize, role: Role, id: SockId) {
        let node = self.link.node;
        let sh = &mut self.shards[s];
        let mut out = Vec::new();
        let c = match role {
            Role::Pub => &mut sh.publ,
            Role::Sub => &mut sh.sub,
            Role::Sentinel => &mut sh.sentinel,
        };
        if role == Role::Sentinel {
            let Location::Sentinel { master, .. } = &sh.url.location else {
                unreachable!("only Sentinel instances have a Sentinel connection")
            };
            if let Some(pass) = &sh.url.sentinel_password {
                resp::encode_auth(
                    &mut out,
                    sh.url.sentinel_user.as_deref().map(str::as_bytes),
                    pass.as_bytes(),
                );
                c.expect.push_back(Expect::Auth);
            }
            resp::encode_sentinel_master_addr(&mut out, master.as_bytes());
            c.expect.push_back(Expect::MasterAddr);
            resp::encode_subscribe(&mut out, [SWITCH_MASTER]);
            io.send(id, &out);
            return;
        }
        if let Some(pass) = &sh.url.password {
            resp::encode_auth(
                &mut out,
                sh.url.user.as_deref().map(str::as_bytes),
                pass.as_bytes(),
            );
            c.expect.push_back(Expect::Auth);
        }
        let name = format!(
            "ringws-{node:016x}-{}",
            if role == Role::Pub { "pub" } else { "sub" }
        );
        resp::encode_client_setname(&mut out, name.as_bytes());
        c.expect.push_back(Expect::SetName);
        if matches!(sh.url.location, Location::Sentinel { .. }) {
            resp::encode_command(&mut out, &[b"ROLE"]);
            c.expect.push_back(Expect::Role);
        }
        io.send(id, &out);
        if role == Role::Sub {
            // Every topic of this instance, and our probe channel; the
            // connection is up once every confirmation is in.
            let mut chans = vec![self.probe_channel.clone()];
            for t in self.interest.subscribed() {
                if shard::pick(&self.names, t) == s {
                    chans.push(channel(&self.prefix, t));
                }
            }
            self.shards[s].sub.hs_sent = true;
            for chunk in chans.chunks(BATCH) {
                self.send_batch(io, s, id, chunk.to_vec(), true, true);
            }
        }
    }

    /// Sends a SUBSCRIBE (`subscribe`) or UNSUBSCRIBE of `chans` on the
    /// subscribing connection `id` of instance `s`, and waits for its
    /// confirmations.
    pub(super) fn send_batch(
        &mut self,
        io: &mut Io,
        s: usize,
        id: SockId,
        chans: Vec<Vec<u8>>,
        subscribe: bool,
        initial: bool,
    ) {
        io.send_with(id, |out| {
            if subscribe {
                resp::encode_subscribe(out, chans.iter())
            } else {
                resp::encode_unsubscribe(out, chans.iter())
            }
        });
        let c = &mut self.shards[s].sub;
        if initial {
            c.initial += 1;
        }
        c.batches.push_back(Batch {
            left: chans.len(),
            chans,
            subscribe,
            initial,
        });
    }

    /// A confirmation (`subscribe`) or a refusal (`None`) of the batch at
    /// the front, on instance `s`'s subscribing connection.
    pub(super) fn batch_answer(
        &mut self,
        io: &mut Io,
        s: usize,
        id: SockId,
        answer: Option<bool>,
        refusal: &str,
    ) -> Result<(), String> {
        let c = &mut self.shards[s].sub;
        let Some(b) = c.batches.front_mut() else {
            return Err(format!("an answer to no (un)subscribe: {refusal}"));
        };
        let done = match answer {
            Some(kind) if kind != b.subscribe => {
                return Err("confirmations out of order".to_owned());
            }
            Some(_) => {
                b.left -= 1;
                b.left == 0
            }
            None => true,
        };
        if !done {
            return Ok(());
        }
        let b = c.batches.pop_front().expect("just seen");
        if b.initial {
            c.initial -= 1;
        }
        if answer.is_none() && b.subscribe {
            if b.chans.len() > 1 {
                // One channel refused fails the whole command (an ACL on
                // channels): find which, one by one.
                for ch in b.chans {
                    self.send_batch(io, s, id, vec![ch], true, b.initial);
                }
            } else {
                let ch = String::from_utf8_lossy(&b.chans[0]).into_owned();
                let sh = &mut self.shards[s];
                sh.refused += 1;
                self.link
                    .counts
                    .refused_topics
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "broker: {}: Redis refused to subscribe {ch:?} ({refusal}); this node's subscribers of it get nothing from other nodes",
                    sh.label
                );
            }
        } else if answer.is_none() {
            tracing::warn!(
                "broker: {}: Redis refused an UNSUBSCRIBE: {refusal}",
                self.shards[s].label
            );
        }
        let c = &self.shards[s].sub;
        if c.initial == 0 && c.expect.is_empty() && c.ready().is_none() {
            self.up(io, s, Role::Sub, id);
        }
        Ok(())
    }

    /// The handshake's last reply (and confirmation) is in.
    pub(super) fn up(&mut self, io: &mut Io, s: usize, role: Role, id: SockId) {
        let now = io.now();
        let sh = &mut self.shards[s];
        let c = match role {
            Role::Pub => &mut sh.publ,
            Role::Sub => &mut sh.sub,
            Role::Sentinel => return,
        };
        c.state = State::Ready { id };
        c.up_since = Some(now);
        let down_for = c.down_since.take().map(|t| now.duration_since(t));
        let again = c.was_up;
        c.was_up = true;
        if role == Role::Pub && c.held_n > 0 {
            let held = std::mem::take(&mut c.held);
            io.send(id, &held);
            for _ in 0..c.held_n {
                c.expect.push_back(Expect::Publish);
            }
            self.link
                .counts
                .published
                .fetch_add(c.held_n as u64, Ordering::Relaxed);
            c.held_n = 0;
        }
        if role == Role::Sub {
            sh.last_traffic = now;
            sh.probe_sent = None;
        }
        let label = sh.label.clone();
        let addr = c.addr;
        if again {
            self.link.counts.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        match (role, addr) {
            (Role::Sub, Some(a)) => tracing::info!(
                "broker: {label} ({a}): subscribed to {} topics",
                self.interest.len()
            ),
            (_, Some(a)) => tracing::info!("broker: {label} ({a}): publishing connection up"),
            _ => {}
        }
        if let (Role::Sub, true, Some(down_for)) = (role, again, down_for) {
            // Messages published elsewhere while this node was away are
            // lost for its subscribers: tell the application.
            if let (Some(f), Some(server)) = (self.link.gap.get(), self.link.server()) {
                let gap = Gap {
                    instance: label,
                    down_for,
                };
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&server, &gap)))
                    .is_err()
                {
                    tracing::error!("broker: the gap callback panicked");
                }
            }
        }
    }
}
