'use strict';
// `node conformance.js --self-test`: the parts of the harness that need no
// gateway, checked against the official libraries and Pusher's docs, so a
// failure of the conformance run points at the gateway, not the harness.
//
//   * the hand-made HTTP API signer against the worked example of [rest]
//     "Worked authentication example", and against the signatures the server
//     SDK itself puts on requests (captured by a local fake API);
//   * the auth endpoint through pusher-js's own 'ajax' transport: channel
//     authorization (private, presence with channel_data), user
//     authentication, a refusal surfacing as HTTPAuthError 403;
//   * an event the SDK encrypts, decrypted by pusher-js with the
//     shared_secret the auth endpoint handed out.
//
// [rest] https://pusher.com/docs/channels/library_auth_reference/rest-api

const crypto = require('node:crypto');
const http = require('node:http');
const { PusherClient, eq, check, hmacHex, serverSdk, signRequest, startAuthServer } = require('./harness');

// The worked example's credentials.
const EXAMPLE = { appId: '3', key: '278d425bdf160c739803', secret: '7ad3773142a6692b25b8' };

/** A local HTTP server that records requests and answers 200 {}. */
function fakeApi() {
  const requests = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, body });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, requests, port: server.address().port }));
  });
}

/** A port nothing listens on. */
function closedPort() {
  return new Promise((resolve) => {
    const s = http.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Re-signs a request the SDK made, with the signer of the harness. */
function resign(cfg, req) {
  const url = new URL(req.url, 'http://x');
  const params = Object.fromEntries(url.searchParams);
  const extra = {};
  for (const [k, v] of Object.entries(params)) {
    if (!['auth_key', 'auth_timestamp', 'auth_version', 'auth_signature', 'body_md5'].includes(k)) extra[k] = v;
  }
  const ours = signRequest({
    method: req.method,
    path: url.pathname,
    params: extra,
    body: req.body || undefined,
    key: cfg.key,
    secret: cfg.secret,
    timestamp: Number(params.auth_timestamp),
  });
  return { theirs: params.auth_signature, ours: new URL(ours, 'http://x').searchParams.get('auth_signature') };
}

function authorize(handler, params) {
  return new Promise((resolve, reject) => {
    handler(params, (err, data) => (err ? reject(err) : resolve(data)));
  });
}

async function run() {
  let failed = 0;
  const step = async (name, fn) => {
    try {
      await fn();
      console.log(`ok self-test ${name}`);
    } catch (e) {
      failed += 1;
      console.log(`FAIL self-test ${name}: ${String(e && e.message ? e.message : e).replace(/\s*\n\s*/g, ' ')}`);
    }
  };

  await step('signer: the worked example of the REST docs', async () => {
    const body = '{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}';
    const signed = signRequest({ method: 'POST', path: '/apps/3/events', body, ...EXAMPLE, timestamp: 1353088179 });
    eq(
      signed,
      '/apps/3/events?auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0' +
        '&body_md5=ec365a775a4cd0599faeb73354201b6f' +
        '&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c',
      'signed request',
    );
  });

  const api = await fakeApi();
  const cfg = {
    ...EXAMPLE,
    host: '127.0.0.1',
    port: api.port,
    timeoutMs: 5000,
    encryptionMasterKeyBase64: crypto.randomBytes(32).toString('base64'),
  };
  const sdk = serverSdk(cfg);
  const auth = await startAuthServer(sdk);
  const pusher = new PusherClient(cfg.key, {
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort: await closedPort(), // never connects: only its auth handlers are used
    forceTLS: false,
    enabledTransports: ['ws'],
    enableStats: false,
    channelAuthorization: {
      endpoint: `${auth.url}/channel-auth`,
      transport: 'ajax',
      params: { user_id: 'alice', user_name: 'Alice' },
    },
    userAuthentication: {
      endpoint: `${auth.url}/user-auth`,
      transport: 'ajax',
      params: { user_id: 'alice', user_name: 'Alice' },
    },
  });

  let encryptedBody = null;
  await step('signer: the same signatures as the server SDK', async () => {
    await sdk.trigger('private-encrypted-x', 'ev', { msg: 'hush' });
    await sdk.get({
      path: '/channels',
      params: { filter_by_prefix: 'presence-', info: 'user_count,subscription_count' },
    });
    await sdk.terminateUserConnections('carol');
    eq(api.requests.length, 3, 'requests captured');
    encryptedBody = JSON.parse(api.requests[0].body);
    for (const req of api.requests) {
      const { theirs, ours } = resign(cfg, req);
      eq(ours, theirs, `auth_signature of ${req.method} ${req.url.split('?')[0]}`);
    }
  });

  await step('auth endpoint: private channel, through pusher-js ajax', async () => {
    const data = await authorize(pusher.config.channelAuthorizer, { socketId: '123.456', channelName: 'private-x' });
    eq(data, { auth: `${cfg.key}:${hmacHex(cfg.secret, '123.456:private-x')}` }, 'private auth');
  });

  await step('auth endpoint: presence channel with channel_data', async () => {
    const data = await authorize(pusher.config.channelAuthorizer, { socketId: '123.456', channelName: 'presence-x' });
    eq(JSON.parse(data.channel_data), { user_id: 'alice', user_info: { name: 'Alice' } }, 'channel_data');
    eq(data.auth, `${cfg.key}:${hmacHex(cfg.secret, `123.456:presence-x:${data.channel_data}`)}`, 'presence auth');
  });

  await step('auth endpoint: user authentication', async () => {
    const data = await authorize(pusher.config.userAuthenticator, { socketId: '123.456' });
    eq(JSON.parse(data.user_data), { id: 'alice', user_info: { name: 'Alice' } }, 'user_data');
    eq(data.auth, `${cfg.key}:${hmacHex(cfg.secret, `123.456::user::${data.user_data}`)}`, 'user auth');
  });

  await step('auth endpoint: a refusal reaches pusher-js as HTTP 403', async () => {
    const denying = new PusherClient(cfg.key, {
      cluster: 'mt1',
      wsHost: '127.0.0.1',
      wsPort: await closedPort(),
      forceTLS: false,
      enabledTransports: ['ws'],
      enableStats: false,
      channelAuthorization: { endpoint: `${auth.url}/channel-auth`, transport: 'ajax', params: { deny: '1' } },
    });
    try {
      await authorize(denying.config.channelAuthorizer, { socketId: '123.456', channelName: 'private-x' });
      throw new Error('the refused authorization succeeded');
    } catch (e) {
      check(e.status === 403, `expected an HTTPAuthError with status 403, got ${e}`);
    } finally {
      denying.disconnect();
    }
  });

  await step('encrypted: the SDK encrypts, pusher-js decrypts with the shared_secret', async () => {
    check(encryptedBody, 'no encrypted trigger captured');
    const wire = JSON.parse(encryptedBody.data);
    check(typeof wire.ciphertext === 'string' && typeof wire.nonce === 'string', `SDK data ${encryptedBody.data}`);
    const channel = pusher.channels.add('private-encrypted-x', pusher);
    await authorize((p, cb) => channel.authorize(p.socketId, cb), { socketId: '123.456' });
    const got = new Promise((resolve) => channel.bind('ev', resolve));
    channel.handleEvent({ event: 'ev', channel: 'private-encrypted-x', data: wire });
    eq(await got, { msg: 'hush' }, 'decrypted data');
  });

  pusher.disconnect();
  auth.server.close();
  api.server.close();
  console.log(`self-test: ${7 - failed} passed, ${failed} failed`);
  return failed > 0 ? 1 : 0;
}

module.exports = { run };
