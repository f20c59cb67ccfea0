#!/usr/bin/env node
'use strict';
// Development-only stand-in for faka's mock payment gateway (the real benchmark uses the C
// binary faka-mock-gateway from tests/mock_gateway/). Speaks the gateway contract of
// DESIGN.md, answers after --delay-ms, and fails --fail-rate of POST /charges with 503.
// A fraction --after-charge of those 503s happen AFTER the charge was recorded (outcome
// unknown to the client), so a retry's GET /charges/{key} finds it and must not charge again.
// For exercising other paths: --decline-rate (402 declined, recorded as declined) and
// --hang-rate (never answers: the client's timeout fires).
//
//   node devmock.js [--port 0] [--delay-ms 2] [--fail-rate 0.2] [--after-charge 0.5]
//                   [--decline-rate 0] [--hang-rate 0]
//   prints "listening 127.0.0.1:PORT"; GET /stats returns counters; SIGTERM/SIGINT exit.

const http = require('http');

const o = { port: 0, delayMs: 2, failRate: 0.2, afterCharge: 0.5, declineRate: 0, hangRate: 0 };
const names = {
  '--port': 'port', '--delay-ms': 'delayMs', '--fail-rate': 'failRate', '--after-charge': 'afterCharge',
  '--decline-rate': 'declineRate', '--hang-rate': 'hangRate',
};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const k = names[argv[i]];
  const v = Number(argv[i + 1]);
  if (!k || !Number.isFinite(v) || v < 0) {
    process.stderr.write('usage: node devmock.js [--port 0] [--delay-ms 2] [--fail-rate 0.2] [--after-charge 0.5] [--decline-rate 0] [--hang-rate 0]\n');
    process.exit(1);
  }
  o[k] = v;
}

const charges = new Map(); // idempotency key -> {id, body, status}
const st = {
  posts: 0, gets: 0, charges: 0, replays: 0, fail_503: 0, fail_503_after_charge: 0, conflicts: 0,
  declined: 0, hung: 0,
};
let seq = 0;

function send(res, code, obj) {
  const b = JSON.stringify(obj);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(b) });
  res.end(b);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => setTimeout(() => handle(req, res, Buffer.concat(chunks).toString('utf8')), o.delayMs));
});
server.keepAliveTimeout = 60000;

function handle(req, res, body) {
  const url = req.url;
  if (req.method === 'GET' && url === '/stats') return send(res, 200, Object.assign({ keys: charges.size }, st));
  if (req.method === 'GET' && url.startsWith('/charges/')) {
    st.gets++;
    const c = charges.get(decodeURIComponent(url.slice('/charges/'.length)));
    return c ? send(res, 200, { id: c.id, status: c.status }) : send(res, 404, { error: 'not_found' });
  }
  if (req.method === 'POST' && url === '/charges') {
    st.posts++;
    const key = req.headers['idempotency-key'];
    let b;
    try { b = JSON.parse(body); } catch (e) { b = null; }
    if (!key || !b || typeof b.order_id !== 'string' || !Number.isInteger(b.amount)) {
      return send(res, 422, { status: 'invalid' });
    }
    if (Math.random() < o.hangRate) { st.hung++; return; } // no answer at all
    const canon = JSON.stringify([b.order_id, b.amount, b.currency, b.buyer]);
    let c = charges.get(key);
    if (c && c.body !== canon) { st.conflicts++; return send(res, 409, { status: 'conflict' }); }
    if (!c && Math.random() < o.declineRate) {
      charges.set(key, { id: `ch_${++seq}`, body: canon, status: 'declined' });
      st.declined++;
      return send(res, 402, { status: 'declined', reason: 'insufficient_funds' });
    }
    if (c && c.status === 'declined') return send(res, 402, { status: 'declined', reason: 'insufficient_funds' });
    const fail = Math.random() < o.failRate;
    const after = fail && Math.random() < o.afterCharge;
    if (fail && !after) { st.fail_503++; return send(res, 503, { error: 'busy' }); }
    if (c) st.replays++;
    else { c = { id: `ch_${++seq}`, body: canon, status: 'succeeded' }; charges.set(key, c); st.charges++; }
    if (after) { st.fail_503_after_charge++; return send(res, 503, { error: 'busy' }); }
    return send(res, 200, { id: c.id, status: c.status });
  }
  send(res, 404, { error: 'no_route' });
}

server.listen(o.port, '127.0.0.1', () => {
  process.stdout.write(`listening 127.0.0.1:${server.address().port}\n`);
});
const stop = () => server.close(() => process.exit(0)) && setTimeout(() => process.exit(0), 500).unref();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
