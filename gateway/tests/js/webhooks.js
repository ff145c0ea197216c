'use strict';
// A webhook endpoint, as an application server would run one: it checks
// each request with the official server SDK (`pusher.webhook(req)
// .isValid()`: X-Pusher-Key names the app, X-Pusher-Signature is the
// HMAC-SHA256 of the raw body with its secret, Content-Type is exactly
// application/json) and keeps the events of the valid ones.
// https://pusher.com/docs/channels/server_api/webhooks
//
// As a module, for scenarios that need webhooks:
//   const { start } = require('./webhooks');
//   const hook = await start(0, key, secret);   // port 0: any free port
//   ... point the gateway at hook.url ...
//   await hook.waitFor((events) => events.length >= 2, 5000);
//   hook.events();    // [{name, channel, ...}, ...] in arrival order
//   hook.requests();  // [{valid, time_ms, events, headers}, ...]
//   await hook.close();
//
// As a program:
//   PORT=0 APP_KEY=key APP_SECRET=secret [FAIL_FIRST=n] node webhooks.js
// prints {"listening": "<url>"} once listening, then one JSON line per
// event received, {"valid": true, "time_ms": ..., "event": {...}}, or one
// per request refused, {"valid": false, "reason": ..., "body": "..."}.
// Valid requests are answered 200, invalid ones 401; with FAIL_FIRST=n the
// first n requests are answered 500 unrecorded (to see the server retry).
// Runs until killed.

const http = require('node:http');
const PusherServer = require('pusher');

/**
 * Listens on 127.0.0.1:`port` (0: any) for webhooks of the app `key` and
 * `secret`. Options: `failFirst` (answer the first n requests 500),
 * `onEvent(event, request)` and `onInvalid(record)` callbacks, `path`
 * (default /webhooks).
 * Resolves to {url, port, events(), requests(), invalid(), waitFor(), close()}.
 */
function start(port, key, secret, options = {}) {
  // The SDK needs an app id to construct; webhooks do not use it.
  const sdk = new PusherServer({ appId: 'webhooks', key, secret });
  const path = options.path || '/webhooks';
  let failLeft = options.failFirst || 0;
  const requests = [];
  const invalid = [];
  const waiters = new Set();
  const notify = () => {
    for (const w of waiters) w();
  };

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      if (failLeft > 0) {
        failLeft -= 1;
        res.writeHead(500).end('failing on purpose\n');
        return;
      }
      let reason = null;
      if (req.method !== 'POST') reason = `method ${req.method}`;
      else if (req.url !== path) reason = `path ${req.url}`;
      let hook = null;
      if (!reason) {
        hook = sdk.webhook({ headers: req.headers, rawBody });
        if (!hook.isValid()) reason = 'isValid() is false';
      }
      if (reason) {
        const record = { valid: false, reason, headers: req.headers, body: rawBody };
        invalid.push(record);
        if (options.onInvalid) options.onInvalid(record);
        res.writeHead(401).end(`${reason}\n`);
        notify();
        return;
      }
      const record = {
        valid: true,
        time_ms: hook.getTime().getTime(),
        events: hook.getEvents(),
        headers: req.headers,
      };
      requests.push(record);
      if (options.onEvent) {
        for (const e of record.events) options.onEvent(e, record);
      }
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      notify();
    });
  });
  // The sender keeps connections alive between batches: let close() end
  // idle ones instead of waiting for them.
  server.keepAliveTimeout = 5000;

  const events = () => requests.flatMap((r) => r.events);
  /** Resolves when `pred(events())` holds; rejects after `timeoutMs`. */
  const waitFor = (pred, timeoutMs = 5000) =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (pred(events())) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(events());
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`webhooks: timed out; got ${JSON.stringify(events())}`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const actual = server.address().port;
      resolve({
        url: `http://127.0.0.1:${actual}${path}`,
        port: actual,
        events,
        requests: () => requests.slice(),
        invalid: () => invalid.slice(),
        waitFor,
        close: () =>
          new Promise((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

module.exports = { start };

if (require.main === module) {
  const env = process.env;
  const missing = ['APP_KEY', 'APP_SECRET'].filter((k) => !env[k]);
  if (missing.length > 0) {
    process.stderr.write(
      `webhooks.js: ${missing.join(', ')} not set\n` +
        'usage: [PORT=0] APP_KEY=.. APP_SECRET=.. [FAIL_FIRST=n] node webhooks.js\n',
    );
    process.exit(2);
  }
  const line = (v) => process.stdout.write(`${JSON.stringify(v)}\n`);
  start(Number(env.PORT || 0), env.APP_KEY, env.APP_SECRET, {
    failFirst: Number(env.FAIL_FIRST || 0),
    onEvent: (event, r) => line({ valid: true, time_ms: r.time_ms, event }),
    onInvalid: (r) => line({ valid: false, reason: r.reason, body: r.body }),
  }).then(
    (hook) => line({ listening: hook.url }),
    (e) => {
      process.stderr.write(`webhooks.js: ${e.message}\n`);
      process.exit(1);
    },
  );
}
