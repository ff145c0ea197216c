'use strict';
// The machinery under conformance.js: configuration from the environment,
// the local auth endpoint (signing with the official server SDK), clients
// (pusher-js, and a raw WebSocket for the wire-level checks), a hand-made
// HTTP API signer, and the runner that gives every scenario a deadline and
// cleans up after it.
//
// Nothing here waits without a bound: every wait goes through a scenario's
// context, whose deadline the runner enforces, and the context records what
// is being waited for so a timeout says which step hung.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const net = require('node:net');

// `require('pusher-js')` resolves to dist/node/pusher.js: the Node build,
// which bundles faye-websocket (its WebSocket), node-XMLHttpRequest (its
// 'ajax' auth transport) and tweetnacl (encrypted channels; the Node entry
// point is pusher-with-encryption).
const PusherClient = require('pusher-js');
const PusherServer = require('pusher');
const PUSHER_JS_VERSION = require('pusher-js/package.json').version;

/** The configuration, from the environment; exits with a usage line when incomplete. */
function configFromEnv(env, scenarioNames) {
  const missing = ['GATEWAY_PORT', 'APP_ID', 'APP_KEY', 'APP_SECRET'].filter((k) => !env[k]);
  if (missing.length > 0) {
    usage(`${missing.join(', ')} not set`);
  }
  const int = (name, fallback) => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n <= 0) usage(`${name} must be a positive integer, got '${raw}'`);
    return n;
  };
  let scenarios = scenarioNames;
  if (env.SCENARIOS) {
    scenarios = env.SCENARIOS.split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    const unknown = scenarios.filter((s) => !scenarioNames.includes(s));
    if (unknown.length > 0) {
      usage(`unknown scenario(s) ${unknown.join(', ')}; known: ${scenarioNames.join(', ')}`);
    }
  }
  return {
    host: env.GATEWAY_HOST || '127.0.0.1',
    port: int('GATEWAY_PORT'),
    // GATEWAY_TLS=1: wss:// and https:// (the CA in NODE_EXTRA_CA_CERTS).
    tls: env.GATEWAY_TLS === '1',
    secondPort: int('SECOND_PORT', null),
    appId: env.APP_ID,
    key: env.APP_KEY,
    secret: env.APP_SECRET,
    scenarios,
    // The server's client-event limit per connection and second (Pusher's
    // documented default is 10).
    clientEventRate: int('CLIENT_EVENT_RATE', 10),
    timeoutMs: int('SCENARIO_TIMEOUT_MS', 5000),
    // Bounds the whole run even when every scenario hangs to its timeout.
    runTimeoutMs: int('RUN_TIMEOUT_MS', 40000),
    // How long "nothing more arrives" is watched for.
    quietMs: int('QUIET_MS', 300),
    // Channel names get this suffix, so that a second run against the same
    // gateway (cache channels remember their last event) starts clean.
    runId: crypto.randomBytes(3).toString('hex'),
    // End-to-end encryption key: only the auth endpoint and the SDK know
    // it; the gateway relays ciphertext.
    encryptionMasterKeyBase64: crypto.randomBytes(32).toString('base64'),
  };
}

function usage(problem) {
  process.stderr.write(
    `conformance.js: ${problem}\n` +
      'usage: GATEWAY_PORT=.. APP_ID=.. APP_KEY=.. APP_SECRET=.. [GATEWAY_HOST=127.0.0.1]\n' +
      '       [GATEWAY_TLS=1] [SECOND_PORT=..] [SCENARIOS=a,b] [CLIENT_EVENT_RATE=10] [SCENARIO_TIMEOUT_MS=5000]\n' +
      '       [RUN_TIMEOUT_MS=40000] [QUIET_MS=300] node conformance.js\n' +
      '   or: node conformance.js --self-test   (no gateway needed)\n',
  );
  process.exit(2);
}

/** The official server SDK, talking to one gateway node's HTTP API. */
function serverSdk(cfg, port = cfg.port, secret = cfg.secret) {
  return new PusherServer({
    appId: cfg.appId,
    key: cfg.key,
    secret,
    host: cfg.host,
    port,
    useTLS: cfg.tls,
    encryptionMasterKeyBase64: cfg.encryptionMasterKeyBase64,
    timeout: cfg.timeoutMs,
  });
}

// ---------------------------------------------------------------------------
// The auth endpoint

/**
 * A local auth endpoint, as an application server would run one, signing
 * with the server SDK. pusher-js posts `socket_id`, `channel_name` and the
 * client's `params` form-encoded; the test's params are `user_id`,
 * `user_name` (presence and sign-in) and `deny` (answer 403).
 *
 * POST /channel-auth -> authorizeChannel (presence channels get channel_data
 *                       {user_id, user_info: {name}}; encrypted channels get
 *                       shared_secret from the SDK)
 * POST /user-auth    -> authenticateUser({id, user_info: {name}})
 */
function startAuthServer(sdk) {
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => {
      const send = (status, value) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      const form = new URLSearchParams(body);
      if (form.get('deny')) {
        send(403, { error: 'denied by the test' });
        return;
      }
      const socketId = form.get('socket_id');
      const user = form.get('user_id');
      const info = { name: form.get('user_name') || user };
      try {
        if (req.method === 'POST' && req.url === '/channel-auth') {
          const channel = form.get('channel_name');
          if (channel.startsWith('presence-')) {
            if (!user) throw new Error('presence channels need a user_id param');
            send(200, sdk.authorizeChannel(socketId, channel, { user_id: user, user_info: info }));
          } else {
            send(200, sdk.authorizeChannel(socketId, channel));
          }
        } else if (req.method === 'POST' && req.url === '/user-auth') {
          if (!user) throw new Error('sign-in needs a user_id param');
          send(200, sdk.authenticateUser(socketId, { id: user, user_info: info }));
        } else {
          send(404, { error: `no route ${req.method} ${req.url}` });
        }
      } catch (e) {
        send(400, { error: String(e && e.message ? e.message : e) });
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({ server, url: `http://127.0.0.1:${port}` });
    });
  });
}

// ---------------------------------------------------------------------------
// HTTP API signing by hand, for the requests the SDK cannot make (an old
// timestamp). https://pusher.com/docs/channels/library_auth_reference/rest-api
// "Generating authentication signatures": HMAC-SHA256 hex of
// METHOD\nPATH\nQUERY, where QUERY is every parameter but auth_signature,
// keys lowercased, sorted by key, joined as in a query string, not
// URL-escaped.

function hmacHex(secret, text) {
  return crypto.createHmac('sha256', secret).update(text).digest('hex');
}

function md5Hex(text) {
  return crypto.createHash('md5').update(text, 'utf8').digest('hex');
}

/** The signed path and query string of one HTTP API request. */
function signRequest({ method, path, params = {}, body, key, secret, timestamp }) {
  const q = { auth_key: key, auth_timestamp: String(timestamp), auth_version: '1.0' };
  if (body) q.body_md5 = md5Hex(body);
  for (const [k, v] of Object.entries(params)) q[k.toLowerCase()] = String(v);
  const keys = Object.keys(q).sort();
  const toSign = [method.toUpperCase(), path, keys.map((k) => `${k}=${q[k]}`).join('&')].join('\n');
  const signature = hmacHex(secret, toSign);
  const query = keys.map((k) => `${k}=${encodeURIComponent(q[k])}`).join('&');
  return `${path}?${query}&auth_signature=${signature}`;
}

async function rawHttp(cfg, method, pathAndQuery, body, port = cfg.port) {
  const scheme = cfg.tls ? 'https' : 'http';
  const res = await fetch(`${scheme}://${cfg.host}:${port}${pathAndQuery}`, {
    method,
    body,
    headers: body ? { 'content-type': 'application/json' } : {},
    signal: AbortSignal.timeout(cfg.timeoutMs),
  });
  return { status: res.status, text: await res.text() };
}

// ---------------------------------------------------------------------------
// Waiting

/**
 * Everything of one kind that arrived (wire messages, closes, ...), kept in
 * order, so a wait never misses what came before it was asked for.
 */
class Recorder {
  constructor(ctx) {
    this.ctx = ctx;
    this.items = [];
    this.waiters = [];
  }

  push(item) {
    this.items.push(item);
    this.waiters = this.waiters.filter((w) => {
      if (!w.pred(item)) return true;
      w.resolve(item);
      return false;
    });
  }

  /** A mark to pass as `since` to count or wait only for later items. */
  mark() {
    return this.items.length;
  }

  count(pred, since = 0) {
    return this.items.slice(since).filter(pred).length;
  }

  /** The first item at or after `since` matching `pred`, arrived or to come. */
  waitFor(pred, what, since = 0) {
    const hit = this.items.slice(since).find(pred);
    if (hit !== undefined) return Promise.resolve(hit);
    return this.ctx.waiting(what, new Promise((resolve) => this.waiters.push({ pred, resolve })));
  }
}

/** The Pusher error data ({code, message}) inside a pusher-js 'error' event, if any. */
function pusherErrorData(e) {
  if (e && e.type === 'PusherError') return e.data;
  if (e && e.type === 'WebSocketError' && e.error && e.error.type === 'PusherError') {
    return e.error.data;
  }
  return null;
}

const reachable = new Set();

/** Fails at once, with the reason, when nothing listens on host:port (pusher-js would retry silently). */
function tcpProbe(host, port) {
  if (reachable.has(`${host}:${port}`)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    s.setTimeout(2000);
    s.once('connect', () => {
      reachable.add(`${host}:${port}`);
      s.destroy();
      resolve();
    });
    s.once('timeout', () => {
      s.destroy();
      reject(new Error(`gateway not reachable at ${host}:${port}: TCP connect timed out`));
    });
    s.once('error', (e) => {
      reject(new Error(`gateway not reachable at ${host}:${port}: ${e.code || e.message}`));
    });
  });
}

// ---------------------------------------------------------------------------
// Clients

/** One pusher-js connection and what it saw. */
class Client {
  constructor(ctx, pusher, label) {
    this.ctx = ctx;
    this.pusher = pusher;
    this.label = label;
    /** Every message after the handshake, as pusher-js decoded it: {event, channel, data, user_id}. */
    this.wire = new Recorder(ctx);
    /** Closes of the underlying WebSocket: {code, reason, wasClean}. */
    this.closes = new Recorder(ctx);
    /** pusher-js 'error' events on the connection. */
    this.errors = new Recorder(ctx);
    const conn = pusher.connection;
    conn.bind('message', (ev) => this.wire.push(ev));
    conn.bind('error', (e) => this.errors.push(e));
    conn.bind('connected', () => {
      // The transport reports the close code that pusher-js otherwise only
      // turns into an action (reconnect or not).
      const transport = conn.connection && conn.connection.transport;
      if (transport) transport.bind('closed', (ev) => this.closes.push(ev || {}));
    });
  }

  get socketId() {
    return this.pusher.connection.socket_id;
  }

  get state() {
    return this.pusher.connection.state;
  }

  /** Resolves once 'connected'; rejects on a Pusher error or a state that will not connect. */
  connected() {
    const conn = this.pusher.connection;
    return this.ctx.waiting(
      `${this.label} to reach 'connected'`,
      new Promise((resolve, reject) => {
        if (conn.state === 'connected') {
          resolve();
          return;
        }
        conn.bind('connected', () => resolve());
        conn.bind('error', (e) => {
          const data = pusherErrorData(e);
          if (data) reject(new Error(`${this.label}: connection error ${JSON.stringify(data)}`));
        });
        conn.bind('state_change', ({ current }) => {
          if (current === 'failed' || current === 'disconnected') {
            reject(new Error(`${this.label}: connection went to '${current}' before 'connected'`));
          }
        });
      }),
    );
  }

  /**
   * Subscribes and resolves with the channel on subscription_succeeded;
   * rejects on pusher:subscription_error (pusher-js's own report of a failed
   * auth request) or on a pusher:error from the server meanwhile.
   */
  async subscribe(name) {
    const since = this.wire.mark();
    const channel = this.pusher.subscribe(name);
    const refused = new Promise((_, reject) => {
      channel.bind('pusher:subscription_error', (e) => {
        reject(new Error(`${this.label}: ${name}: pusher:subscription_error ${JSON.stringify(e)}`));
      });
      this.wire
        .waitFor((ev) => ev.event === 'pusher:error', `(pusher:error on ${this.label})`, since)
        .then((ev) => {
          reject(new Error(`${this.label}: subscribing ${name}: pusher:error ${JSON.stringify(ev.data)}`));
        });
    });
    const ok = this.wire.waitFor(
      (ev) => ev.event === 'pusher_internal:subscription_succeeded' && ev.channel === name,
      `${this.label}: subscription_succeeded on ${name}`,
      since,
    );
    await Promise.race([ok, refused]);
    return channel;
  }

  /** The next event `event` on `channel` (from `since`) as it came off the wire. */
  event(channel, event, since = 0) {
    return this.wire.waitFor(
      (ev) => ev.channel === channel && ev.event === event,
      `${this.label}: '${event}' on ${channel}`,
      since,
    );
  }

  count(channel, event, since = 0) {
    return this.wire.count((ev) => ev.channel === channel && ev.event === event, since);
  }

  /** The next pusher:error (a connection-level event: no channel, per the protocol). */
  pusherError(since = 0, pred = () => true, what = 'pusher:error') {
    return this.wire.waitFor(
      (ev) => ev.event === 'pusher:error' && pred(ev.data || {}),
      `${this.label}: ${what}`,
      since,
    );
  }

  disconnect() {
    this.pusher.disconnect();
  }
}

/** What one scenario owns: its clients, sockets and the steps it waits on. */
class Ctx {
  constructor(cfg, shared, name) {
    this.cfg = cfg;
    this.shared = shared;
    this.name = name;
    this.pending = new Set();
    this.clients = [];
    this.sockets = [];
    this.done = false;
  }

  /** Channel name unique to this run. */
  ch(base) {
    return `${base}-${this.cfg.runId}`;
  }

  /** Records `what` as awaited until `promise` settles, for the timeout message. */
  async waiting(what, promise) {
    this.pending.add(what);
    try {
      return await promise;
    } finally {
      this.pending.delete(what);
    }
  }

  live() {
    if (this.done) throw new Error('scenario already ended');
  }

  sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  /** Waits the quiet window, in which nothing more should arrive. */
  quiet() {
    return this.waiting(`a quiet window of ${this.cfg.quietMs} ms`, this.sleep(this.cfg.quietMs));
  }

  /**
   * A pusher-js client, not yet known to be connected. `user` (and `name`)
   * go to the auth endpoint as params; `channelAuthorization` and
   * `userAuthentication` replace the endpoint (for forged auth).
   */
  async client({ user, name, port = this.cfg.port, key = this.cfg.key, label, ...auth } = {}) {
    this.live();
    await this.waiting(`TCP connect to ${this.cfg.host}:${port}`, tcpProbe(this.cfg.host, port));
    this.live();
    const params = {};
    if (user) {
      params.user_id = user;
      params.user_name = name || user[0].toUpperCase() + user.slice(1);
    }
    const endpoint = (path) => ({ endpoint: `${this.shared.authUrl}${path}`, transport: 'ajax', params });
    const pusher = new PusherClient(key, {
      cluster: 'mt1', // required by pusher-js; unused with wsHost
      wsHost: this.cfg.host,
      wsPort: port,
      wssPort: port,
      forceTLS: this.cfg.tls,
      enabledTransports: ['ws'],
      enableStats: false,
      channelAuthorization: auth.channelAuthorization || endpoint('/channel-auth'),
      userAuthentication: auth.userAuthentication || endpoint('/user-auth'),
    });
    const c = new Client(this, pusher, label || user || `client${this.clients.length + 1}`);
    this.clients.push(c);
    return c;
  }

  /** A connected pusher-js client. */
  async connect(opts = {}) {
    const c = await this.client(opts);
    await c.connected();
    return c;
  }

  /**
   * A raw WebSocket to /app/<key>, through the WebSocket client that
   * pusher-js bundles (faye-websocket), for what pusher-js hides: the exact
   * wire encoding and the server's close code.
   */
  async raw({ key = this.cfg.key, port = this.cfg.port } = {}) {
    this.live();
    await this.waiting(`TCP connect to ${this.cfg.host}:${port}`, tcpProbe(this.cfg.host, port));
    const WebSocket = PusherClient.Runtime.getWebSocketAPI();
    const url =
      `${this.cfg.tls ? 'wss' : 'ws'}://${this.cfg.host}:${port}/app/${encodeURIComponent(key)}` +
      `?protocol=7&client=js&version=${PUSHER_JS_VERSION}&flash=false`;
    const ws = new WebSocket(url);
    this.sockets.push(ws);
    const sock = {
      /** Parsed text messages, `data` left as sent (a string when double-encoded). */
      messages: new Recorder(this),
      closes: new Recorder(this),
      send: (obj) => ws.send(JSON.stringify(obj)),
    };
    ws.onmessage = (e) => {
      let m;
      try {
        m = JSON.parse(e.data);
      } catch {
        m = { unparsable: String(e.data) };
      }
      sock.messages.push(m);
    };
    ws.onclose = (e) => sock.closes.push({ code: e.code, reason: e.reason });
    ws.onerror = () => {}; // a close follows, with code 1006
    return sock;
  }

  cleanup() {
    this.done = true;
    for (const c of this.clients) {
      try {
        c.disconnect();
      } catch {
        // already gone
      }
    }
    for (const ws of this.sockets) {
      try {
        ws.close();
      } catch {
        // already gone
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Checks

function eq(actual, expected, what) {
  try {
    assert.deepStrictEqual(actual, expected);
  } catch {
    throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

/** A readable reason from an SDK RequestError or a fetch failure. */
function describeError(e) {
  if (e && e.status) return `HTTP ${e.status} ${String(e.body || '').slice(0, 200)}`;
  const cause = e && (e.error || e.cause);
  if (cause) return `${e.message}: ${cause.code || cause.message || cause}`;
  return String(e && e.message ? e.message : e);
}

/** Awaits an SDK call that must succeed; returns its parsed JSON body. */
async function api(ctx, what, call) {
  let res;
  try {
    res = await ctx.waiting(what, call());
  } catch (e) {
    throw new Error(`${what}: ${describeError(e)}`);
  }
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${what}: HTTP ${res.status}, body is not JSON: ${text.slice(0, 200)}`);
  }
}

/** Awaits an SDK call that must fail with HTTP `status`. */
async function apiStatus(ctx, what, status, call) {
  let res;
  try {
    res = await ctx.waiting(what, call());
  } catch (e) {
    if (e.status === status) return;
    throw new Error(`${what}: expected HTTP ${status}, got ${describeError(e)}`);
  }
  throw new Error(`${what}: expected HTTP ${status}, got ${res.status}`);
}

// ---------------------------------------------------------------------------
// The runner

/**
 * Runs the scenarios one after another, each with its timeout (cut to what
 * is left of the run's budget), prints one line per scenario and the totals,
 * and returns the number that failed.
 */
async function run(cfg, shared, scenarios) {
  const deadline = Date.now() + cfg.runTimeoutMs;
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const name of cfg.scenarios) {
    const s = scenarios[name];
    const skip = s.skip && s.skip(cfg);
    if (skip) {
      console.log(`skip ${name}: ${skip}`);
      skipped += 1;
      continue;
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      console.log(`FAIL ${name}: not run: the run's budget of ${cfg.runTimeoutMs} ms is spent`);
      failed += 1;
      continue;
    }
    const limit = Math.min(s.timeoutMs || cfg.timeoutMs, left);
    const ctx = new Ctx(cfg, shared, name);
    const started = Date.now();
    let timer;
    const body = Promise.resolve().then(() => s.run(ctx));
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => {
        const on = [...ctx.pending].filter((p) => !p.startsWith('(')).join('; ') || 'nothing in particular';
        reject(new Error(`timed out after ${limit} ms waiting for: ${on}`));
      }, limit);
    });
    try {
      await Promise.race([body, timeout]);
      console.log(`ok ${name} (${Date.now() - started} ms)`);
      passed += 1;
    } catch (e) {
      const reason = String(e && e.message ? e.message : e).replace(/\s*\n\s*/g, ' ');
      console.log(`FAIL ${name}: ${reason}`);
      failed += 1;
    } finally {
      clearTimeout(timer);
      // A scenario cut short may still settle later; nobody listens then.
      body.catch(() => {});
      ctx.cleanup();
    }
  }
  console.log(`conformance: ${passed} passed, ${failed} failed, ${skipped} skipped`);
  return failed;
}

module.exports = {
  PusherClient,
  PusherServer,
  Ctx,
  api,
  apiStatus,
  check,
  configFromEnv,
  eq,
  hmacHex,
  md5Hex,
  pusherErrorData,
  rawHttp,
  run,
  serverSdk,
  signRequest,
  startAuthServer,
};
