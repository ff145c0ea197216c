//! The broker thread as the client loop's [`Handler`]: socket events go to
//! the connection or traffic code, and the loop's turns, wake-ups and
//! deadlines drive the timers and the workers' queue.

use super::*;

impl Handler for Thread {
    fn connected(&mut self, io: &mut Io, id: SockId, res: std::io::Result<()>) {
        let Some(&(s, role)) = self.socks.get(&id) else {
            return io.close(id);
        };
        match res {
            Ok(()) => self.handshake(io, s, role, id),
            Err(e) => {
                let addr = self.conn(s, role).addr;
                let why = format!(
                    "cannot connect to {}: {e}",
                    addr.map_or("?".into(), |a| a.to_string())
                );
                self.note_error(s, role, &why);
                io.close(id);
            }
        }
    }

    fn data(&mut self, io: &mut Io, id: SockId, buf: InputBuf) {
        let Some(&(s, role)) = self.socks.get(&id) else {
            return;
        };
        self.conn(s, role).input.extend_from_slice(buf.as_slice());
        drop(buf);
        loop {
            let c = self.conn(s, role);
            let f = match c.dec.decode(&mut c.input) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    self.note_error(s, role, &format!("a protocol error: {e:?}"));
                    io.close(id);
                    return;
                }
            };
            if let Err(why) = self.frame(io, s, role, id, f) {
                self.note_error(s, role, &why);
                io.close(id);
                return;
            }
            if !self.socks.contains_key(&id) || !io.is_open(id) {
                return;
            }
        }
    }

    fn eof(&mut self, io: &mut Io, id: SockId, err: Option<std::io::Error>) {
        if let Some(&(s, role)) = self.socks.get(&id) {
            let why = match err {
                Some(e) => format!("lost: {e}"),
                None if role == Role::Sentinel => "closed by the Sentinel".to_owned(),
                None => "closed by Redis".to_owned(),
            };
            self.note_error(s, role, &why);
        }
        io.close(id);
    }

    fn gone(&mut self, io: &mut Io, id: SockId, _why: Gone) {
        let Some((s, role)) = self.socks.remove(&id) else {
            return;
        };
        let now = io.now();
        let c = self.conn(s, role);
        let was_ready = c.ready().is_some();
        let stable = was_ready && c.up_since.is_some_and(|t| now.duration_since(t) >= STABLE);
        if stable {
            c.failures = 0;
        }
        let failures = c.failures;
        let wait = if stable {
            // A first retry at once: most losses are a restart or a
            // failover, over before the backoff would matter.
            Duration::ZERO
        } else {
            self.backoff(failures)
        };
        let sh = &mut self.shards[s];
        let why = sh.last_error.clone();
        let label = sh.label.clone();
        let sentinel = matches!(sh.url.location, Location::Sentinel { .. });
        let c = match role {
            Role::Pub => &mut sh.publ,
            Role::Sub => &mut sh.sub,
            Role::Sentinel => &mut sh.sentinel,
        };
        let moving = std::mem::take(&mut c.moving);
        if !stable {
            c.failures = c.failures.saturating_add(1);
        }
        c.state = State::Down {
            retry_at: now + wait,
        };
        c.down_since.get_or_insert(now);
        let dropped = c.held_n;
        c.held.clear();
        c.held_n = 0;
        c.expect.clear();
        c.batches.clear();
        c.initial = 0;
        c.hs_sent = false;
        c.input.clear();
        // Anything pipelined and unanswered may or may not have been
        // published: at most once.
        if dropped > 0 {
            self.link
                .counts
                .dropped_disconnected
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        if role != Role::Sentinel {
            // A probe in flight on either connection is void.
            sh.probe_sent = None;
        }
        if role != Role::Sentinel && !moving && !sentinel {
            // Resolve the name again: its address may have changed.
            sh.target = None;
        }
        if sentinel && role != Role::Sentinel && !moving {
            // Ask the Sentinels again: the master may have moved and the
            // announcement been missed. A new Sentinel connection asks.
            sh.target = None;
            if let Some(id) = sh.sentinel.id() {
                io.close(id);
            }
        }
        if stable {
            tracing::warn!(
                "broker: {label}: {} connection {why}; connecting again",
                role.name()
            );
        } else {
            log_failure(&label, role, failures + 1, &why, wait);
        }
        self.update_ready(io);
    }

    fn wake(&mut self, io: &mut Io) {
        self.link.waker.clear();
        if self.link.stopping() && self.stop_at.is_none() {
            // Send what is queued, then go.
            self.take_work(io);
            self.stop_at = Some(io.now() + Duration::from_secs(1));
            for &id in self.socks.keys() {
                io.close_after_flush(id);
            }
            return;
        }
        if self.stop_at.is_none() {
            self.take_work(io);
        }
    }

    fn turn(&mut self, io: &mut Io) {
        let now = io.now();
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.tick(io);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        Some(self.next_tick)
    }

    fn done(&self) -> bool {
        self.stop_at.is_some() && self.socks.is_empty()
    }
}
