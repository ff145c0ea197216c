'use strict';
// ringws-gateway against the official Pusher Channels libraries: pusher-js
// (the browser/Node client) and pusher (the Node server SDK).
//
//   GATEWAY_PORT=6001 APP_ID=1 APP_KEY=key APP_SECRET=secret node conformance.js
//   node conformance.js --self-test     # the parts that need no gateway
//
// Env: GATEWAY_HOST (127.0.0.1), GATEWAY_PORT (WebSocket and HTTP API, plain
// ws/http), APP_ID, APP_KEY, APP_SECRET; optional SECOND_PORT (a second node
// sharing the app through Redis: cross_node), SCENARIOS (comma list),
// CLIENT_EVENT_RATE (the server's client-event limit per connection and
// second, 10), SCENARIO_TIMEOUT_MS (5000), RUN_TIMEOUT_MS (40000: the whole
// run's budget), QUIET_MS (300: how long "nothing else arrives" is watched).
//
// Prints `ok <name> (<ms> ms)`, `FAIL <name>: <reason>` or `skip <name>:
// <why>` per scenario, then `conformance: N passed, N failed, N skipped`;
// exits 1 when any failed, 2 on bad usage. Each scenario makes its own
// clients, on channel names suffixed with a per-run id, and disconnects them
// when it ends, passed, failed or timed out.
//
// Expected server behaviour is taken from Pusher's documentation, cited
// where it is checked:
//   [protocol] https://pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol
//   [rest]     https://pusher.com/docs/channels/library_auth_reference/rest-api
//   [cache]    https://pusher.com/docs/channels/using_channels/cache-channels
//   [terminate] https://pusher.com/docs/channels/server_api/terminating-user-connections
// and pusher-js's behaviour from its source (node_modules/pusher-js/src).

const {
  api,
  apiStatus,
  check,
  configFromEnv,
  eq,
  pusherErrorData,
  rawHttp,
  run,
  serverSdk,
  signRequest,
  startAuthServer,
} = require('./harness');

const SOCKET_ID = /^\d+\.\d+$/;

/** Member ids of a pusher-js presence channel, sorted. */
function memberIds(channel) {
  const ids = [];
  channel.members.each((m) => ids.push(m.id));
  return ids.sort();
}

/** The channel-level listener for `event` on a pusher-js channel, as a promise of its data. */
function nextOn(ctx, channel, event, what) {
  return ctx.waiting(what, new Promise((resolve) => channel.bind(event, (data) => resolve(data))));
}

/** Signs `clients` in and waits for pusher:signin_success on each. */
async function signIn(clients) {
  await Promise.all(
    clients.map((c) => {
      const since = c.wire.mark();
      c.pusher.signin();
      return c.wire.waitFor((ev) => ev.event === 'pusher:signin_success', `${c.label}: pusher:signin_success`, since);
    }),
  );
}

const scenarios = {
  connect: {
    async run(ctx) {
      const c = await ctx.connect();
      eq(c.state, 'connected', 'pusher-js state');
      check(SOCKET_ID.test(c.socketId), `socket_id ${JSON.stringify(c.socketId)} does not match ${SOCKET_ID}`);

      // [protocol] "Double encoding": pusher:connection_established carries
      // `data` as a JSON string of {socket_id, activity_timeout}; pusher-js
      // accepts either, other client libraries need the string.
      const raw = await ctx.raw();
      const first = await raw.messages.waitFor(() => true, 'the first message on a raw WebSocket');
      eq(first.event, 'pusher:connection_established', 'first event on a raw WebSocket');
      check(
        typeof first.data === 'string',
        `pusher:connection_established data must be a JSON-encoded string, got ${JSON.stringify(first.data)}`,
      );
      const data = JSON.parse(first.data);
      check(SOCKET_ID.test(data.socket_id), `raw socket_id ${JSON.stringify(data.socket_id)}`);
      check(data.socket_id !== c.socketId, 'two connections got the same socket_id');
      check(
        Number.isInteger(data.activity_timeout) && data.activity_timeout > 0,
        `activity_timeout must be a positive number of seconds, got ${JSON.stringify(data.activity_timeout)}`,
      );

      // [protocol] "it will respond to a pusher:ping event with a pusher:pong event".
      raw.send({ event: 'pusher:ping', data: {} });
      await raw.messages.waitFor((m) => m.event === 'pusher:pong', 'pusher:pong after pusher:ping');
    },
  },

  public: {
    async run(ctx) {
      const { sdk } = ctx.shared;
      const ch = ctx.ch('my-channel');
      const ch2 = ctx.ch('my-channel-2');
      const a = await ctx.connect({ label: 'a' });
      const b = await ctx.connect({ label: 'b' });
      await Promise.all([a.subscribe(ch), b.subscribe(ch), a.subscribe(ch2)]);
      const raw = await ctx.raw();
      raw.send({ event: 'pusher:subscribe', data: { channel: ch } });
      await raw.messages.waitFor(
        (m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === ch,
        'raw: subscription_succeeded',
      );

      // [rest] POST /events: "Response is an empty JSON hash".
      const body = await api(ctx, 'trigger', () => sdk.trigger(ch, 'my-event', { message: 'hello' }));
      eq(body, {}, 'POST /events response');
      for (const c of [a, b]) {
        const ev = await c.event(ch, 'my-event');
        eq(ev.data, { message: 'hello' }, `my-event data on ${c.label}`);
      }
      // [protocol] Channel events: `data` is relayed as the string the API got.
      const onRaw = await raw.messages.waitFor((m) => m.event === 'my-event', 'raw: my-event');
      eq(onRaw, { event: 'my-event', channel: ch, data: '{"message":"hello"}' }, 'my-event on the wire');

      const sinceB = b.wire.mark();
      const batch = await api(ctx, 'triggerBatch', () =>
        sdk.triggerBatch([
          { channel: ch, name: 'batch-1', data: { n: 1 } },
          { channel: ch2, name: 'batch-2', data: { n: 2 } },
          { channel: ch, name: 'batch-3', data: { n: 3 } },
        ]),
      );
      eq(batch, {}, 'POST /batch_events response');
      eq((await a.event(ch, 'batch-1')).data, { n: 1 }, 'batch-1 on a');
      eq((await a.event(ch2, 'batch-2')).data, { n: 2 }, 'batch-2 on a');
      eq((await a.event(ch, 'batch-3')).data, { n: 3 }, 'batch-3 on a');
      await b.event(ch, 'batch-3', sinceB);

      // [rest] socket_id "Excludes the event from being sent to a specific connection".
      const sinceA = a.wire.mark();
      await api(ctx, 'trigger with socket_id', () => sdk.trigger(ch, 'excluded', { n: 1 }, { socket_id: a.socketId }));
      await b.event(ch, 'excluded');
      await ctx.quiet();
      eq(a.count(ch, 'excluded', sinceA), 0, 'events delivered to the excluded socket');
      eq(b.count(ch2, 'batch-2'), 0, 'batch-2 delivered to b, which is not subscribed to its channel');
    },
  },

  multi_channel_trigger: {
    async run(ctx) {
      const channels = [1, 2, 3].map((i) => ctx.ch(`multi-${i}`));
      const c = await ctx.connect();
      await Promise.all(channels.map((n) => c.subscribe(n)));
      await api(ctx, 'trigger to 3 channels', () => ctx.shared.sdk.trigger(channels, 'multi-event', { k: 'v' }));
      for (const n of channels) {
        eq((await c.event(n, 'multi-event')).data, { k: 'v' }, `multi-event data on ${n}`);
      }
      await ctx.quiet();
      for (const n of channels) eq(c.count(n, 'multi-event'), 1, `multi-event deliveries on ${n}`);
    },
  },

  private: {
    async run(ctx) {
      const { sdk, authUrl } = ctx.shared;
      const room = ctx.ch('private-room');
      const a = await ctx.connect({ label: 'a' });
      await a.subscribe(room);
      await api(ctx, 'trigger', () => sdk.trigger(room, 'secret', { s: 1 }));
      eq((await a.event(room, 'secret')).data, { s: 1 }, 'secret on a');

      // The auth endpoint says no: pusher-js itself reports it, with the
      // HTTP status, and never sends pusher:subscribe
      // (src/core/channels/channel.ts, subscribe()).
      const denied = await ctx.connect({
        label: 'denied',
        channelAuthorization: { endpoint: `${authUrl}/channel-auth`, transport: 'ajax', params: { deny: '1' } },
      });
      const err = await nextOn(
        ctx,
        denied.pusher.subscribe(room),
        'pusher:subscription_error',
        'denied: subscription_error',
      );
      eq([err.type, err.status], ['AuthError', 403], 'pusher:subscription_error type and status');

      // A forged signature reaches the server. [protocol] pusher:error "may
      // be sent from Pusher Channels in response to invalid authentication"
      // as {event: "pusher:error", data: {message: String, code: Integer
      // (optional)}}: no `channel` field; the connection stays open.
      const forged = await ctx.connect({
        label: 'forged',
        channelAuthorization: {
          customHandler: (_params, cb) => cb(null, { auth: `${ctx.cfg.key}:${'0'.repeat(64)}` }),
        },
      });
      const since = forged.wire.mark();
      forged.pusher.subscribe(room);
      const ev = await forged.pusherError(since);
      check(ev.channel === undefined, `pusher:error must not carry a channel, got ${JSON.stringify(ev.channel)}`);
      check(
        typeof ev.data.message === 'string',
        `pusher:error data.message must be a string: ${JSON.stringify(ev.data)}`,
      );
      check(
        ev.data.code === undefined || ev.data.code === null || Number.isInteger(ev.data.code),
        `pusher:error data.code must be an integer or absent: ${JSON.stringify(ev.data)}`,
      );
      const sinceForged = forged.wire.mark();
      await api(ctx, 'trigger after the forged subscribe', () => sdk.trigger(room, 'secret-2', { s: 2 }));
      await a.event(room, 'secret-2');
      await ctx.quiet();
      eq(forged.count(room, 'pusher_internal:subscription_succeeded'), 0, 'subscription_succeeded with a forged auth');
      eq(forged.count(room, 'secret-2', sinceForged), 0, 'events delivered after a forged auth');
      eq(forged.state, 'connected', 'state after a refused subscription');
      await forged.subscribe(ctx.ch('after-forged'));
    },
  },

  presence: {
    async run(ctx) {
      const room = ctx.ch('presence-room');
      const alice = await ctx.connect({ user: 'alice' });
      const ac = await alice.subscribe(room);
      // [protocol] pusher_internal:subscription_succeeded data:
      // {presence: {ids, hash, count}}.
      const sub = await alice.event(room, 'pusher_internal:subscription_succeeded');
      eq(
        sub.data,
        { presence: { count: 1, ids: ['alice'], hash: { alice: { name: 'Alice' } } } },
        'alice: presence data',
      );
      eq(ac.members.me, { id: 'alice', info: { name: 'Alice' } }, 'alice: members.me');

      const bob1 = await ctx.connect({ user: 'bob', label: 'bob#1' });
      const b1 = await bob1.subscribe(room);
      const added = await alice.event(room, 'pusher_internal:member_added');
      eq(added.data, { user_id: 'bob', user_info: { name: 'Bob' } }, 'member_added data');
      eq([b1.members.count, memberIds(b1)], [2, ['alice', 'bob']], 'bob#1: members count and ids');
      eq(ac.members.count, 2, 'alice: members.count after bob joined');

      // A user is one member however many connections it has.
      const bob2 = await ctx.connect({ user: 'bob', label: 'bob#2' });
      const b2 = await bob2.subscribe(room);
      eq([b2.members.count, memberIds(b2)], [2, ['alice', 'bob']], 'bob#2: members count and ids');
      await ctx.quiet();
      eq(alice.count(room, 'pusher_internal:member_added'), 1, "member_added on alice after bob's second connection");

      // [protocol] Channel events: user_id "is only present if this is a
      // client event on a presence channel", the sender's user id.
      b2.trigger('client-wave', { hi: 1 });
      const wave = await alice.event(room, 'client-wave');
      eq([wave.data, wave.user_id], [{ hi: 1 }, 'bob'], 'client-wave data and user_id on alice');

      bob1.disconnect();
      await ctx.quiet();
      eq(alice.count(room, 'pusher_internal:member_removed'), 0, "member_removed while bob's second connection stays");
      bob2.disconnect();
      const removed = await alice.event(room, 'pusher_internal:member_removed');
      eq(removed.data, { user_id: 'bob' }, 'member_removed data');
      eq([ac.members.count, memberIds(ac)], [1, ['alice']], 'alice: members after bob left');
    },
  },

  cache: {
    async run(ctx) {
      const prices = ctx.ch('cache-prices');
      const a = await ctx.connect({ label: 'a' });
      // [cache] an empty cache channel answers a subscription with
      // pusher:cache_miss on the channel ({event, channel}); pusher-js
      // emits it on the channel as-is (Channel.handleEvent).
      await a.subscribe(prices);
      await a.event(prices, 'pusher:cache_miss');
      await api(ctx, 'trigger', () => ctx.shared.sdk.trigger(prices, 'price', { usd: 42 }));
      await a.event(prices, 'price');

      // [cache] "if a cached value exists, it's sent to the client as the
      // first event on that channel".
      const b = await ctx.connect({ label: 'b' });
      await b.subscribe(prices);
      eq((await b.event(prices, 'price')).data, { usd: 42 }, 'cached price on b');
      const first = b.wire.items.find((ev) => ev.channel === prices && !ev.event.startsWith('pusher_internal:'));
      eq(first.event, 'price', 'first event on b');
      eq(b.count(prices, 'pusher:cache_miss'), 0, 'cache_miss on b');
    },
  },

  client_events: {
    async run(ctx) {
      const rate = ctx.cfg.clientEventRate;
      const chat = ctx.ch('private-chat');
      const a = await ctx.connect({ label: 'a' });
      const b = await ctx.connect({ label: 'b' });
      const ac = await a.subscribe(chat);
      await b.subscribe(chat);
      // [protocol] Triggering Channel Client Events; not delivered back to
      // the sender; no user_id outside presence channels.
      const sinceA = a.wire.mark();
      ac.trigger('client-typing', { x: 1 });
      const got = await b.event(chat, 'client-typing');
      eq([got.data, got.user_id], [{ x: 1 }, undefined], 'client-typing data and user_id on b');
      await ctx.quiet();
      eq(a.count(chat, 'client-typing', sinceA), 0, 'client-typing echoed to its sender');

      // [protocol] "To be accepted the channel must be either a private
      // (private-) or a presence (presence-) channel." pusher-js does not
      // refuse this itself (Channel.trigger checks only the client- prefix),
      // so the event reaches the server, which answers pusher:error.
      const pub = ctx.ch('public-chat');
      const pa = await a.subscribe(pub);
      await b.subscribe(pub);
      const sinceErr = a.wire.mark();
      const sinceB = b.wire.mark();
      pa.trigger('client-typing', { x: 2 });
      const refused = await a.pusherError(sinceErr);
      check(
        typeof refused.data.message === 'string',
        `pusher:error without a message: ${JSON.stringify(refused.data)}`,
      );
      await ctx.quiet();
      eq(b.count(pub, 'client-typing', sinceB), 0, 'client event relayed on a public channel');
      eq(a.state, 'connected', 'state after a refused client event');

      // [protocol] 4301 "Client event rejected due to rate limit", a
      // pusher:error (4300-4399: "Any other type of error"), not a close.
      const lane = ctx.ch('private-rate');
      const c = await ctx.connect({ label: 'c' });
      const d = await ctx.connect({ label: 'd' });
      const cc = await c.subscribe(lane);
      await d.subscribe(lane);
      const sinceC = c.wire.mark();
      const burst = rate * 3;
      for (let i = 0; i < burst; i++) cc.trigger('client-burst', { i });
      const limited = await c.pusherError(sinceC, (data) => data.code === 4301, 'pusher:error 4301');
      check(typeof limited.data.message === 'string', `4301 without a message: ${JSON.stringify(limited.data)}`);
      // A new second, a new allowance.
      await ctx.waiting('the rate window to pass', ctx.sleep(1100));
      eq(c.state, 'connected', 'state after rate limiting');
      const delivered = d.count(lane, 'client-burst');
      // At most two windows' worth: the burst may straddle a window boundary.
      check(delivered <= 2 * rate, `${delivered} of ${burst} burst events delivered, limit ${rate}/s`);
      cc.trigger('client-after', {});
      await d.event(lane, 'client-after');
    },
  },

  encrypted: {
    async run(ctx) {
      const name = ctx.ch('private-encrypted-x');
      const a = await ctx.connect();
      // The auth endpoint adds shared_secret (SDK, from the master key);
      // pusher-js keeps it and decrypts with its bundled tweetnacl
      // (src/core/channels/encrypted_channel.ts).
      const ch = await a.subscribe(name);
      const decrypted = nextOn(ctx, ch, 'secret-event', 'the decrypted secret-event');
      await api(ctx, 'encrypted trigger', () => ctx.shared.sdk.trigger(name, 'secret-event', { msg: 'hush' }));
      eq(await decrypted, { msg: 'hush' }, 'decrypted data');
      // [protocol] Encrypted Channel Events: data is {ciphertext, nonce},
      // relayed as-is.
      const wire = await a.event(name, 'secret-event');
      check(
        typeof wire.data.ciphertext === 'string' && typeof wire.data.nonce === 'string',
        `encrypted event data must be {ciphertext, nonce}: ${JSON.stringify(wire.data)}`,
      );
      check(!JSON.stringify(wire.data).includes('hush'), 'plaintext on the wire');
    },
  },

  channel_queries: {
    async run(ctx) {
      const { sdk } = ctx.shared;
      const pub = ctx.ch('query-pub');
      const pres = ctx.ch('presence-query');
      const empty = ctx.ch('query-empty');
      const alice = await ctx.connect({ user: 'alice' });
      const bob = await ctx.connect({ user: 'bob' });
      const bob2 = await ctx.connect({ user: 'bob', label: 'bob#2' });
      await Promise.all([alice.subscribe(pub), bob.subscribe(pub)]);
      await Promise.all([alice.subscribe(pres), bob.subscribe(pres), bob2.subscribe(pres)]);
      const get = (path, params) =>
        api(ctx, `GET ${path} ${JSON.stringify(params || {})}`, () => sdk.get({ path, params }));

      // [rest] GET channels: "If this parameter [info] is missing, an empty
      // hash of attributes will be returned for each channel".
      const all = await get('/channels');
      eq([all.channels[pub], all.channels[pres]], [{}, {}], 'GET /channels entries');
      check(!(empty in all.channels), `${empty} listed by GET /channels`);
      const presence = await get('/channels', { filter_by_prefix: 'presence-', info: 'user_count' });
      eq(presence.channels[pres], { user_count: 2 }, 'presence channel entry (user_count counts distinct users)');
      const stray = Object.keys(presence.channels).filter((n) => !n.startsWith('presence-'));
      eq(stray, [], 'channels outside filter_by_prefix');
      // [rest] "If an attribute such as user_count is requested, and the
      // request is not limited to presence channels, the API will return an
      // error (400 code)."
      await apiStatus(ctx, 'GET /channels info=user_count without the presence- prefix', 400, () =>
        sdk.get({ path: '/channels', params: { info: 'user_count' } }),
      );

      // [rest] GET channel: "The occupied status is always reported, as well
      // as any requested attributes". user_count is for presence channels,
      // subscription_count for "All (except Presence channels)"; asking for
      // an attribute a channel does not have "will return an error".
      eq(
        await get(`/channels/${pres}`, { info: 'user_count' }),
        { occupied: true, user_count: 2 },
        'presence channel info',
      );
      eq(
        await get(`/channels/${pub}`, { info: 'subscription_count' }),
        { occupied: true, subscription_count: 2 },
        'public channel info',
      );
      await apiStatus(ctx, 'GET channel info=user_count on a public channel', 400, () =>
        sdk.get({ path: `/channels/${pub}`, params: { info: 'user_count' } }),
      );
      eq(await get(`/channels/${empty}`), { occupied: false }, 'unoccupied channel');

      // [rest] GET users: { "users": [{ "id": "1" }, ...] }; "If you send
      // this request to any other type of channel, you will get a 400".
      const users = await get(`/channels/${pres}/users`);
      const ids = (users.users || []).map((u) => u.id).sort();
      eq(ids, ['alice', 'bob'], 'presence users');
      eq(
        users.users.every((u) => Object.keys(u).length === 1),
        true,
        'user entries hold only id',
      );
      await apiStatus(ctx, 'GET users of a public channel', 400, () => sdk.get({ path: `/channels/${pub}/users` }));
    },
  },

  signin: {
    async run(ctx) {
      // [protocol] pusher:signin -> pusher:signin_success {user_data: String}
      // or pusher:error. After it pusher-js subscribes to
      // #server-to-user-<id> (src/core/user.ts), which sendToUser targets.
      const sam = await ctx.connect({ user: 'sam' });
      const since = sam.wire.mark();
      sam.pusher.signin();
      const ok = await sam.wire.waitFor(
        (ev) => ev.event === 'pusher:signin_success',
        'sam: pusher:signin_success',
        since,
      );
      check(
        typeof ok.data.user_data === 'string',
        `signin_success user_data must be a string: ${JSON.stringify(ok.data)}`,
      );
      eq(JSON.parse(ok.data.user_data), { id: 'sam', user_info: { name: 'Sam' } }, 'signin_success user_data');
      await sam.event('#server-to-user-sam', 'pusher_internal:subscription_succeeded');
      const notice = nextOn(ctx, sam.pusher.user, 'notice', 'sam: the notice sent to the user');
      await api(ctx, 'sendToUser', () => ctx.shared.sdk.sendToUser('sam', 'notice', { n: 1 }));
      eq(await notice, { n: 1 }, 'sendToUser data');

      const forged = await ctx.connect({
        label: 'forged',
        userAuthentication: {
          customHandler: (_params, cb) =>
            cb(null, { auth: `${ctx.cfg.key}:${'0'.repeat(64)}`, user_data: JSON.stringify({ id: 'mallory' }) }),
        },
      });
      const sinceForged = forged.wire.mark();
      forged.pusher.signin();
      await forged.pusherError(sinceForged);
      await ctx.quiet();
      eq(
        forged.wire.count((ev) => ev.event === 'pusher:signin_success'),
        0,
        'signin_success with a forged auth',
      );
    },
  },

  terminate: {
    async run(ctx) {
      const carol1 = await ctx.connect({ user: 'carol', label: 'carol#1' });
      const carol2 = await ctx.connect({ user: 'carol', label: 'carol#2' });
      const dave = await ctx.connect({ user: 'dave' });
      // [terminate] "this will only terminate connections that have
      // successfully completed the user authentication flow. Connections for
      // users subscribed to presence channels but that have not been
      // authenticated via this flow will not be terminated."
      const presenceOnly = await ctx.connect({ user: 'carol', label: 'carol (presence only)' });
      await signIn([carol1, carol2, dave]);
      await presenceOnly.subscribe(ctx.ch('presence-terminate'));

      // [rest] POST terminate_connections: "Response is an empty JSON hash".
      const body = await api(ctx, 'terminateUserConnections', () => ctx.shared.sdk.terminateUserConnections('carol'));
      eq(body, {}, 'terminate_connections response');
      // Any close code: Pusher documents none for this.
      await Promise.all([carol1, carol2].map((c) => c.closes.waitFor(() => true, `${c.label} to be closed`)));
      await ctx.quiet();
      eq(
        dave.closes.count(() => true),
        0,
        "closes of dave's connection",
      );
      eq(
        presenceOnly.closes.count(() => true),
        0,
        'closes of the connection that never signed in',
      );
    },
  },

  errors: {
    async run(ctx) {
      const { cfg } = ctx;
      const { sdk } = ctx.shared;
      const ch = ctx.ch('errors');

      // [protocol] 4001 "Application does not exist", in 4000-4099: "the
      // connection being closed ... reconnect using the same parameters will
      // not succeed". Since protocol 6 the close code is the signal; a
      // pusher:error first is allowed but must carry the same code.
      const unknownKey = `no-such-key-${cfg.runId}`;
      const raw = await ctx.raw({ key: unknownKey });
      const accepted = raw.messages
        .waitFor((m) => m.event === 'pusher:connection_established', '(connection_established)')
        .then(() => {
          throw new Error('a connection with an unknown app key got pusher:connection_established');
        });
      const closed = await Promise.race([
        raw.closes.waitFor(() => true, 'the server to close a connection with an unknown app key'),
        accepted,
      ]);
      eq(closed.code, 4001, 'close code for an unknown app key');
      for (const m of raw.messages.items) {
        check(m.event === 'pusher:error', `unexpected ${JSON.stringify(m)} before the close`);
        const data = typeof m.data === 'string' ? JSON.parse(m.data) : m.data;
        eq(data.code, 4001, 'pusher:error code before the close');
      }
      // pusher-js turns either form into an 'error' event with that code and
      // the 'refused' action: disconnect, no retry
      // (src/core/connection/protocol/protocol.ts, getCloseAction).
      const c = await ctx.client({ key: unknownKey, label: 'unknown-key' });
      const err = await c.errors.waitFor((e) => pusherErrorData(e), 'pusher-js error event for an unknown app key');
      eq(pusherErrorData(err).code, 4001, 'pusher-js error code');
      eq(c.state, 'disconnected', 'pusher-js state after 4001');

      // [rest] 401 "Authentication error".
      await apiStatus(ctx, 'trigger signed with a wrong secret', 401, () =>
        serverSdk(cfg, cfg.port, `wrong-${cfg.secret}`).trigger(ch, 'e', {}),
      );
      // [rest] "The server will only accept requests where the timestamp is
      // within 600s of the current time". The same hand-signed request with
      // a fresh timestamp passes, so the 401 is the timestamp's.
      const path = `/apps/${cfg.appId}/events`;
      const body = JSON.stringify({ name: 'replayed', channels: [ch], data: '{}' });
      const now = Math.floor(Date.now() / 1000);
      const signed = (timestamp) =>
        signRequest({ method: 'POST', path, body, key: cfg.key, secret: cfg.secret, timestamp });
      const fresh = await ctx.waiting('hand-signed POST /events', rawHttp(cfg, 'POST', signed(now), body));
      eq(fresh.status, 200, `hand-signed request with a fresh timestamp (body ${fresh.text.slice(0, 200)})`);
      const old = await ctx.waiting('POST /events 700 s old', rawHttp(cfg, 'POST', signed(now - 700), body));
      eq(old.status, 401, `request with auth_timestamp 700 s old (body ${old.text.slice(0, 200)})`);

      // [rest] "The event data should not be larger than 10KB. If you
      // attempt to POST an event with a larger data parameter, you will
      // receive a 413 error code." The same for batch_events.
      await apiStatus(ctx, 'trigger with 11 KiB of data', 413, () => sdk.trigger(ch, 'big', 'x'.repeat(11 * 1024)));
      await apiStatus(ctx, 'triggerBatch with 11 KiB of data', 413, () =>
        sdk.triggerBatch([{ channel: ch, name: 'big', data: 'x'.repeat(11 * 1024) }]),
      );
      await api(ctx, 'trigger with 9 KiB of data', () => sdk.trigger(ch, 'fits', 'x'.repeat(9 * 1024)));
    },
  },

  cross_node: {
    skip: (cfg) => (cfg.secondPort ? null : 'SECOND_PORT not set'),
    timeoutMs: 10000,
    async run(ctx) {
      const { cfg } = ctx;
      const { sdk } = ctx.shared;
      const sdk2 = serverSdk(cfg, cfg.secondPort);
      const name = ctx.ch('cross');
      const n1 = await ctx.connect({ label: 'node1' });
      const n2 = await ctx.connect({ label: 'node2', port: cfg.secondPort });
      await Promise.all([n1.subscribe(name), n2.subscribe(name)]);
      await api(ctx, "trigger through node 1's API", () => sdk.trigger(name, 'via-1', { n: 1 }));
      eq((await n2.event(name, 'via-1')).data, { n: 1 }, 'via-1 on node 2');
      await n1.event(name, 'via-1');
      await api(ctx, "trigger through node 2's API", () => sdk2.trigger(name, 'via-2', { n: 2 }));
      eq((await n1.event(name, 'via-2')).data, { n: 2 }, 'via-2 on node 1');

      const chat = ctx.ch('private-cross');
      const [c1] = await Promise.all([n1.subscribe(chat), n2.subscribe(chat)]);
      c1.trigger('client-hop', { h: 1 });
      eq((await n2.event(chat, 'client-hop')).data, { h: 1 }, 'client-hop on node 2');

      const room = ctx.ch('presence-cross');
      const alice = await ctx.connect({ user: 'alice' });
      const bob = await ctx.connect({ user: 'bob', port: cfg.secondPort });
      const ac = await alice.subscribe(room);
      const bc = await bob.subscribe(room);
      eq(memberIds(bc), ['alice', 'bob'], 'members seen by bob on node 2');
      eq((await alice.event(room, 'pusher_internal:member_added')).data.user_id, 'bob', 'member_added on alice');
      const users = await api(ctx, "GET users through node 2's API", () =>
        sdk2.get({ path: `/channels/${room}/users` }),
      );
      eq(users.users.map((u) => u.id).sort(), ['alice', 'bob'], 'presence users through node 2');
      const info = await api(ctx, "GET channel through node 1's API", () =>
        sdk.get({ path: `/channels/${room}`, params: { info: 'user_count' } }),
      );
      eq(info, { occupied: true, user_count: 2 }, 'presence channel info through node 1');
      bob.disconnect();
      eq(
        (await alice.event(room, 'pusher_internal:member_removed')).data,
        { user_id: 'bob' },
        'member_removed on alice',
      );
      eq(memberIds(ac), ['alice'], 'members seen by alice after bob left');
    },
  },
};

async function main() {
  if (process.argv.includes('--self-test')) {
    process.exit(await require('./selftest').run());
  }
  const cfg = configFromEnv(process.env, Object.keys(scenarios));
  const sdk = serverSdk(cfg);
  const auth = await startAuthServer(sdk);
  const failed = await run(cfg, { sdk, authUrl: auth.url }, scenarios);
  process.exit(failed > 0 ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
