//! What flows on the broker thread's connections once they are up: the
//! workers' publishes and interest changes going out, and the replies,
//! messages and Sentinel events coming in.

use super::*;

impl Thread {
    /// Takes the workers' interest changes and the queued publishes.
    pub(super) fn take_work(&mut self, io: &mut Io) {
        let now = io.now();
        for ((w, t), on) in self.link.take_interest() {
            self.interest.change(w, &t, on, now);
        }
        self.send_interest(io);
        let at = unix_ns();
        let head = envelope::head(self.link.node, at);
        while let Ok(o) = self.rx.try_recv() {
            self.link.took(o.frame.len());
            let s = shard::pick(&self.names, &o.topic);
            match o.except {
                None => self.publish(io, s, &o, &head),
                Some(c) => {
                    let head = envelope::head_except(self.link.node, at, c);
                    self.publish(io, s, &o, &head);
                }
            }
        }
    }

    pub(super) fn publish(&mut self, io: &mut Io, s: usize, o: &Outgoing, head: &[u8]) {
        let counts = &self.link.counts;
        let prefix = &self.prefix[..];
        let c = &mut self.shards[s].publ;
        let encode = |out: &mut Vec<u8>| {
            resp::encode_publish_pieces(out, &[prefix, o.topic.as_bytes()], &[head, &o.frame]);
        };
        match c.state {
            State::Ready { id } => {
                if io.buffered(id) > self.opts.max_pending_bytes {
                    counts.dropped_backpressure.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if io.send_with(id, encode) {
                    c.expect.push_back(Expect::Publish);
                    counts.published.fetch_add(1, Ordering::Relaxed);
                } else {
                    counts.dropped_disconnected.fetch_add(1, Ordering::Relaxed);
                }
            }
            State::Opening { .. } => {
                // Counted as published once sent (`up`), or as dropped if
                // the handshake fails.
                if c.held.len() > self.opts.max_pending_bytes {
                    counts.dropped_backpressure.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                encode(&mut c.held);
                c.held_n += 1;
            }
            State::Down { .. } => {
                counts.dropped_disconnected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends the (un)subscribes decided since the last call, batched per
    /// instance, on the subscribing connections that have a socket (one
    /// still connecting subscribes everything once connected).
    pub(super) fn send_interest(&mut self, io: &mut Io) {
        let (subs, unsubs) = self.interest.take_batches();
        self.link
            .counts
            .topics
            .store(self.interest.len() as u64, Ordering::Relaxed);
        for (list, on) in [(subs, true), (unsubs, false)] {
            if list.is_empty() {
                continue;
            }
            self.batch.resize_with(self.shards.len(), Vec::new);
            for t in &list {
                self.batch[shard::pick(&self.names, t)].push(channel(&self.prefix, t));
            }
            for s in 0..self.shards.len() {
                let chans = std::mem::take(&mut self.batch[s]);
                let c = &self.shards[s].sub;
                // Connected but still in its handshake: the SUBSCRIBE it
                // sent was made from the table before this batch. Not yet
                // connected: the handshake will subscribe the table.
                if let (true, Some(id), false) = (c.hs_sent, c.id(), chans.is_empty()) {
                    for chunk in chans.chunks(BATCH) {
                        self.send_batch(io, s, id, chunk.to_vec(), on, false);
                    }
                }
            }
        }
    }

    /// `/readyz`: every instance's two connections up.
    pub(super) fn update_ready(&mut self, _io: &mut Io) {
        let mut up = 0;
        let mut why = Vec::new();
        for sh in &self.shards {
            if sh.publ.ready().is_some() && sh.sub.ready().is_some() {
                up += 1;
            } else {
                why.push(format!("{}: {}", sh.label, sh.last_error));
            }
        }
        let ready = up == self.shards.len();
        let refused: usize = self.shards.iter().map(|sh| sh.refused).sum();
        self.link
            .counts
            .refused_topics
            .store(refused as u64, Ordering::Relaxed);
        self.link
            .counts
            .instances_up
            .store(up as u64, Ordering::Relaxed);
        let status = if ready {
            format!("{up} Redis instance(s) connected and subscribed")
        } else {
            why.join("; ")
        };
        self.ready = ready;
        self.link.set_ready(ready, status);
    }

    /// A whole frame from connection (`s`, `role`).
    pub(super) fn frame(
        &mut self,
        io: &mut Io,
        s: usize,
        role: Role,
        id: SockId,
        f: Frame,
    ) -> Result<(), String> {
        // Replies to the handshake (and to publishes) come first, in order.
        let c = self.conn(s, role);
        if let Some(e) = c.expect.pop_front() {
            return self.reply(io, s, role, id, e, f);
        }
        if role == Role::Sentinel {
            return self.sentinel_event(io, s, f);
        }
        if role != Role::Sub {
            return Err(format!("an unexpected reply: {f:?}"));
        }
        match PubSub::from_frame(f) {
            Ok(PubSub::Message { channel, payload }) => {
                let now = io.now();
                let sh = &mut self.shards[s];
                sh.last_traffic = now;
                if channel[..] == self.probe_channel[..] {
                    sh.probe_sent = None;
                    self.link
                        .counts
                        .probe_ok_ns
                        .store(unix_ns(), Ordering::Relaxed);
                    return Ok(());
                }
                self.relay(&channel, payload);
                Ok(())
            }
            Ok(PubSub::Subscribed { .. }) => self.batch_answer(io, s, id, Some(true), ""),
            Ok(PubSub::Unsubscribed { .. }) => self.batch_answer(io, s, id, Some(false), ""),
            Ok(PubSub::Pong(_)) => Ok(()),
            Err(Frame::Error(e)) => {
                let e = String::from_utf8_lossy(&e).into_owned();
                self.batch_answer(io, s, id, None, &e)
            }
            Err(f) => Err(format!("an unexpected frame: {f:?}")),
        }
    }

    /// A push on the Sentinel connection: `+switch-master <name> <old ip>
    /// <old port> <new ip> <new port>` moves the instance to the new master.
    pub(super) fn sentinel_event(&mut self, io: &mut Io, s: usize, f: Frame) -> Result<(), String> {
        let Location::Sentinel { master, .. } = &self.shards[s].url.location else {
            unreachable!("only Sentinel instances have a Sentinel connection")
        };
        match PubSub::from_frame(f) {
            Ok(PubSub::Message { payload, .. }) => {
                let text = String::from_utf8_lossy(&payload);
                let parts: Vec<&str> = text.split(' ').collect();
                if let [name, _, _, ip, port] = parts.as_slice() {
                    if name == master {
                        let hp = host_port(ip.as_bytes(), port.as_bytes());
                        tracing::info!("broker: {}: failover to {hp}", self.shards[s].label);
                        self.shards[s].announced = Some(hp);
                        self.resolve_announced(io, s);
                    }
                }
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(f) => Err(format!("an unexpected Sentinel frame: {f:?}")),
        }
    }

    /// Hands a message from another node to the workers that want it.
    pub(super) fn relay(&mut self, channel: &[u8], payload: bytes::Bytes) {
        let counts = &self.link.counts;
        let Some(topic) = channel
            .strip_prefix(&self.prefix[..])
            .and_then(|t| std::str::from_utf8(t).ok())
        else {
            return;
        };
        let listeners = self.link.listeners(topic);
        let workers = self.interest.workers(topic);
        if listeners.is_none() && workers.is_none() {
            // Lingering, or raced an unsubscribe: nobody here wants it.
            return;
        }
        let env = match envelope::open(payload) {
            Ok(e) => e,
            Err(m) => {
                counts.dropped_malformed.fetch_add(1, Ordering::Relaxed);
                log_malformed(topic, m);
                return;
            }
        };
        if env.origin == self.link.node {
            return;
        }
        counts.received.fetch_add(1, Ordering::Relaxed);
        if let (Some(fs), Some(server)) = (listeners, self.link.server()) {
            match crate::app::data_payload(&env.frame, 0) {
                Some((_, p)) => {
                    for f in fs {
                        f(&server, p);
                    }
                }
                None => {
                    counts.dropped_malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let Some((topic, workers)) = workers else {
            return;
        };
        let dropped = self
            .link
            .deliver(topic, &env.frame, workers.iter(), env.except);
        if dropped > 0 {
            counts
                .dropped_mailbox
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }

    pub(super) fn reply(
        &mut self,
        io: &mut Io,
        s: usize,
        role: Role,
        id: SockId,
        e: Expect,
        f: Frame,
    ) -> Result<(), String> {
        let refused = |f: &Frame| match f {
            Frame::Error(m) => Some(String::from_utf8_lossy(m).into_owned()),
            _ => None,
        };
        match e {
            Expect::Publish => {
                if let Some(m) = refused(&f) {
                    self.link
                        .counts
                        .dropped_refused
                        .fetch_add(1, Ordering::Relaxed);
                    log_refused(&self.shards[s].label, &m);
                }
                Ok(())
            }
            // A name is a convenience that an old Redis may not know; any
            // other error (maxclients, NOAUTH) is the connection failing.
            Expect::SetName => match refused(&f) {
                Some(m) if !m.to_ascii_lowercase().contains("unknown") => {
                    Err(format!("refused: {m}"))
                }
                _ => self.maybe_up(io, s, role, id),
            },
            Expect::Auth => match refused(&f) {
                Some(m) => Err(format!("AUTH refused: {m}")),
                None => self.maybe_up(io, s, role, id),
            },
            Expect::Role => match &f {
                Frame::Array(items) | Frame::Push(items) => match items.first() {
                    Some(Frame::Bulk(r)) if r[..] == *b"master" => self.maybe_up(io, s, role, id),
                    Some(Frame::Bulk(r)) => Err(format!(
                        "{} is a {}, not the master (a failover in progress?)",
                        self.conn(s, role)
                            .addr
                            .map_or("?".into(), |a| a.to_string()),
                        String::from_utf8_lossy(r)
                    )),
                    _ => Err(format!("an unexpected ROLE reply: {f:?}")),
                },
                _ => Err(format!("ROLE refused: {f:?}")),
            },
            Expect::MasterAddr => {
                let hp = match &f {
                    Frame::Array(items) => match items.as_slice() {
                        [Frame::Bulk(h), Frame::Bulk(p)] => host_port(h, p),
                        _ => return Err(format!("an unexpected Sentinel reply: {f:?}")),
                    },
                    Frame::Null => return Err("the Sentinel knows no such master".to_owned()),
                    _ => return Err(format!("the Sentinel refused: {f:?}")),
                };
                let sh = &mut self.shards[s];
                sh.announced = Some(hp);
                sh.sentinel.failures = 0;
                sh.sentinel.state = State::Ready { id };
                sh.sentinel.up_since = Some(io.now());
                self.resolve_announced(io, s);
                Ok(())
            }
        }
    }

    /// After a handshake reply: up once nothing more is due.
    pub(super) fn maybe_up(
        &mut self,
        io: &mut Io,
        s: usize,
        role: Role,
        id: SockId,
    ) -> Result<(), String> {
        let c = self.conn(s, role);
        if c.expect.is_empty() && c.initial == 0 && c.ready().is_none() {
            self.up(io, s, role, id);
        }
        Ok(())
    }
}
