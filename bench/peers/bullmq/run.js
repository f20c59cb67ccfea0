#!/usr/bin/env node
'use strict';
// faka benchmark peer: runs faka's two workloads (queue-only "none" and "gateway") on BullMQ,
// against the same Redis, and prints ONE line of JSON. See README.md in this folder.
//
// The same file runs in two roles: the coordinator (default: flags, flush, stock, producer,
// measurement) and a worker (forked by the coordinator, BULLBENCH_ROLE=worker).

const fs = require('fs');
const http = require('http');
const https = require('https');
const { fork } = require('child_process');

const QUEUE = 'orders';
const SKUS = ['sku-a', 'sku-b', 'sku-c', 'sku-d'];
const ADD_CHUNK = 1000;
const READ_PAGE = 1000;
const POLL_MS = 50;

const USAGE = `usage: node run.js --redis redis://127.0.0.1:PORT --orders N --mode none|gateway
         [--gateway-url http://127.0.0.1:GPORT] [--concurrency C] [--processes P]
         [--retry-base-ms B] [--retry-cap-ms CAP] [--attempts A] [--prefix bullbench]
         [--http-timeout-ms T] [--timeout-s S] [--stock-spare S] [--cleanup]
         [--honor-retry-after]
  --redis URL          redis://[user:password@]host:port[/db]            (required)
  --orders N           number of orders (jobs) to run                     (required)
  --mode M             none: no gateway (orders are paid); gateway: charge via --gateway-url
  --gateway-url URL    faka gateway contract base URL (required with --mode gateway)
  --concurrency C      BullMQ Worker concurrency per process              (default 64)
  --processes P        worker processes                                   (default 1)
  --retry-base-ms B    full-jitter backoff base                           (default 1000)
  --retry-cap-ms CAP   full-jitter backoff cap                            (default 60000)
  --attempts A         BullMQ attempts per job                            (default 8)
  --prefix P           key prefix for all keys of this benchmark          (default bullbench)
  --http-timeout-ms T  per-request gateway timeout                        (default 5000)
  --timeout-s S        give up if the run has not finished after S seconds (default 900)
  --stock-spare S      codes loaded per SKU beyond what the orders need; negative values
                       make the last orders fail out_of_stock (testing)   (default 10)
  --cleanup            delete this prefix's keys after the run (default: keep them)
  --honor-retry-after  a retry after a 429/5xx with Retry-After waits at least that long, as
                       faka does (default: the backoff alone)
Prints one line of JSON on stdout; diagnostics go to stderr.
Exit codes: 0 ok, 1 bad flags, 2 Redis/gateway unreachable, 3 run timed out, 4 worker died.`;

function die(code, msg) {
  process.stderr.write(`bullbench: ${msg}\n`);
  process.exit(code);
}

// ---------------------------------------------------------------- flags

function parseIntFlag(name, v, min, max) {
  if (!/^[0-9]+$/.test(String(v))) die(1, `--${name} must be an integer, got '${v}'\n${USAGE}`);
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min || n > max) die(1, `--${name} must be in ${min}..${max}, got ${v}`);
  return n;
}

function parseRedisUrl(s) {
  let u;
  try { u = new URL(s); } catch (e) { die(1, `--redis: not a URL: '${s}'`); }
  if (u.protocol !== 'redis:') die(1, `--redis: only redis:// URLs are supported, got '${s}'`);
  const o = { host: u.hostname || '127.0.0.1', port: u.port ? Number(u.port) : 6379 };
  if (u.username) o.username = decodeURIComponent(u.username);
  if (u.password) o.password = decodeURIComponent(u.password);
  const db = u.pathname.replace(/^\//, '');
  if (db !== '') {
    if (!/^[0-9]+$/.test(db)) die(1, `--redis: bad database number '${db}'`);
    o.db = Number(db);
  }
  return o;
}

function parseArgs(argv) {
  const o = {
    redis: null, orders: null, mode: null, gatewayUrl: null, concurrency: 64, processes: 1,
    retryBaseMs: 1000, retryCapMs: 60000, attempts: 8, prefix: 'bullbench',
    httpTimeoutMs: 5000, timeoutS: 900, stockSpare: 10, cleanup: false, honorRetryAfter: false,
  };
  const takes = {
    '--redis': 'redis', '--orders': 'orders', '--mode': 'mode', '--gateway-url': 'gatewayUrl',
    '--concurrency': 'concurrency', '--processes': 'processes', '--retry-base-ms': 'retryBaseMs',
    '--retry-cap-ms': 'retryCapMs', '--attempts': 'attempts', '--prefix': 'prefix',
    '--http-timeout-ms': 'httpTimeoutMs', '--timeout-s': 'timeoutS', '--stock-spare': 'stockSpare',
  };
  const raw = {};
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    if (a === '-h' || a === '--help') { process.stdout.write(USAGE + '\n'); process.exit(0); }
    if (a === '--cleanup') { o.cleanup = true; continue; }
    if (a === '--honor-retry-after') { o.honorRetryAfter = true; continue; }
    let val;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) { val = a.slice(eq + 1); a = a.slice(0, eq); }
    const key = takes[a];
    if (!key) die(1, `unknown argument '${argv[i]}'\n${USAGE}`);
    if (val === undefined) {
      if (i + 1 >= argv.length) die(1, `${a} needs a value`);
      val = argv[++i];
    }
    raw[key] = val;
  }
  if (raw.redis === undefined) die(1, `--redis is required\n${USAGE}`);
  if (raw.orders === undefined) die(1, `--orders is required\n${USAGE}`);
  if (raw.mode === undefined) die(1, `--mode is required\n${USAGE}`);
  o.redis = raw.redis;
  o.redisOpts = parseRedisUrl(raw.redis);
  o.orders = parseIntFlag('orders', raw.orders, 1, 100000000);
  if (raw.mode !== 'none' && raw.mode !== 'gateway') die(1, `--mode must be none or gateway, got '${raw.mode}'`);
  o.mode = raw.mode;
  if (raw.concurrency !== undefined) o.concurrency = parseIntFlag('concurrency', raw.concurrency, 1, 10000);
  if (raw.processes !== undefined) o.processes = parseIntFlag('processes', raw.processes, 1, 256);
  if (raw.retryBaseMs !== undefined) o.retryBaseMs = parseIntFlag('retry-base-ms', raw.retryBaseMs, 0, 86400000);
  if (raw.retryCapMs !== undefined) o.retryCapMs = parseIntFlag('retry-cap-ms', raw.retryCapMs, 0, 86400000);
  if (raw.attempts !== undefined) o.attempts = parseIntFlag('attempts', raw.attempts, 1, 1000);
  if (raw.httpTimeoutMs !== undefined) o.httpTimeoutMs = parseIntFlag('http-timeout-ms', raw.httpTimeoutMs, 1, 3600000);
  if (raw.timeoutS !== undefined) o.timeoutS = parseIntFlag('timeout-s', raw.timeoutS, 1, 86400);
  if (raw.stockSpare !== undefined) {
    if (!/^-?[0-9]+$/.test(raw.stockSpare)) die(1, `--stock-spare must be an integer, got '${raw.stockSpare}'`);
    o.stockSpare = Number(raw.stockSpare);
  }
  if (raw.prefix !== undefined) o.prefix = raw.prefix;
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(o.prefix)) die(1, `--prefix must be 1-64 chars of [A-Za-z0-9_.-], got '${o.prefix}'`);
  if (o.prefix === 'faka') die(1, `--prefix faka would flush faka's own keys; pick another prefix`);
  if (o.mode === 'gateway') {
    if (raw.gatewayUrl === undefined) die(1, '--mode gateway needs --gateway-url');
    let u;
    try { u = new URL(raw.gatewayUrl); } catch (e) { die(1, `--gateway-url: not a URL: '${raw.gatewayUrl}'`); }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') die(1, `--gateway-url must be http(s)://, got '${raw.gatewayUrl}'`);
    o.gatewayUrl = raw.gatewayUrl.replace(/\/+$/, '');
  } else if (raw.gatewayUrl !== undefined) {
    die(1, '--gateway-url only makes sense with --mode gateway');
  }
  return o;
}

// ---------------------------------------------------------------- shared helpers

function orderFor(n) {
  // n is 1-based. Deterministic mix: 4 SKUs round robin, every third order buys 2 codes.
  return {
    order_id: `B${n}`, idempotency_key: `B${n}`, sku: SKUS[n % SKUS.length],
    qty: n % 3 === 0 ? 2 : 1, amount: 3000, currency: 'CNY', buyer: `b${n}@example.com`,
  };
}

function bullVersion() {
  try { return require('bullmq/package.json').version; } catch (e) { return 'unknown'; }
}

function redisConn(cfg, extra) {
  return Object.assign({}, cfg.redisOpts, extra || {});
}

function vmHwmKb() {
  try {
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch (e) { return 0; }
}

// Minimal HTTP client with a keep-alive agent. Resolves {status, body}; rejects on
// network errors, resets and timeouts (the caller treats those as transient).
function makeHttp(baseUrl, timeoutMs, maxSockets) {
  const u = new URL(baseUrl);
  const mod = u.protocol === 'https:' ? https : http;
  const agent = new mod.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
  const basePath = u.pathname.replace(/\/+$/, '');
  function request(method, path, headers, body) {
    return new Promise((resolve, reject) => {
      const h = Object.assign({}, headers);
      if (body !== undefined) {
        h['Content-Type'] = 'application/json';
        h['Content-Length'] = Buffer.byteLength(body);
      }
      const req = mod.request({
        protocol: u.protocol, hostname: u.hostname, port: u.port, method,
        path: basePath + path, headers: h, agent,
      }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('aborted', () => reject(new Error('gateway: response aborted')));
        res.on('error', reject);
      });
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`gateway: timeout after ${timeoutMs} ms`)));
      req.on('error', reject);
      if (body !== undefined) req.write(body);
      req.end();
    });
  }
  return { request, agent };
}

function parseJsonObject(s) {
  try {
    const v = JSON.parse(s);
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch (e) { return null; }
}

// ---------------------------------------------------------------- worker role

async function workerMain() {
  const cfg = JSON.parse(process.env.BULLBENCH_CFG);
  const { Worker } = require('bullmq');
  const IORedis = require('ioredis');
  const P = cfg.prefix;
  const cmd = new IORedis(redisConn(cfg, { maxRetriesPerRequest: 20 }));
  cmd.on('error', (e) => process.stderr.write(`bullbench worker ${process.pid}: redis: ${e.message}\n`));
  const gw = cfg.mode === 'gateway' ? makeHttp(cfg.gatewayUrl, cfg.httpTimeoutMs, cfg.concurrency) : null;

  let rssPeak = process.memoryUsage().rss;
  const sampler = setInterval(() => {
    const r = process.memoryUsage().rss;
    if (r > rssPeak) rssPeak = r;
  }, 100);

  async function release(stockKey, resvKey, codes) {
    const m = cmd.multi();
    if (codes.length) m.rpush(stockKey, ...codes);
    m.del(resvKey);
    await m.exec();
  }

  async function failWith(reason, stockKey, resvKey, codes, extra) {
    await release(stockKey, resvKey, codes);
    return Object.assign({ failed: reason }, extra || {});
  }

  // A transient gateway answer: BullMQ retries it. With --honor-retry-after the error carries
  // the answer's Retry-After (delta-seconds; a date or junk counts as none) for the backoff.
  function transient(msg, r) {
    const e = new Error(msg);
    const v = r && r.headers ? r.headers['retry-after'] : undefined;
    if (cfg.honorRetryAfter && typeof v === 'string' && /^[0-9]{1,5}$/.test(v.trim())) {
      e.retryAfterMs = Number(v.trim()) * 1000;
    }
    return e;
  }

  // One attempt of faka's pipeline. Return = outcome stored by BullMQ in the job hash
  // (the "order record"); throw = transient, BullMQ retries with the backoff below.
  async function processOrder(job) {
    const o = job.data;
    const key = o.idempotency_key || o.order_id;
    const idemKey = `${P}:idem:${key}`;
    const stockKey = `${P}:stock:${o.sku}`;
    const resvKey = `${P}:resv:${o.order_id}`;

    // (1) accept: idempotency key
    const set = await cmd.set(idemKey, o.order_id, 'EX', 86400, 'NX');
    if (set === null) {
      const owner = await cmd.get(idemKey);
      if (owner !== null && owner !== o.order_id) return { duplicate: true, duplicate_of: owner };
    }

    // (2) reserve once; a retry (or a stalled re-run) reuses the stored reservation
    let codes = null;
    if (job.attemptsMade > 0) {
      const r = await cmd.get(resvKey);
      if (r !== null) codes = JSON.parse(r);
    }
    if (codes === null) {
      const popped = (await cmd.lpop(stockKey, o.qty)) || [];
      if (popped.length < o.qty) {
        if (popped.length) await cmd.rpush(stockKey, ...popped);
        return { failed: 'out_of_stock' };
      }
      const ok = await cmd.set(resvKey, JSON.stringify(popped), 'NX');
      if (ok === null) { // someone (an earlier run of this job) reserved first: keep theirs
        await cmd.rpush(stockKey, ...popped);
        codes = JSON.parse(await cmd.get(resvKey));
      } else {
        codes = popped;
      }
    }

    // (3) charge
    let paymentId = null;
    if (gw) {
      const hdr = { 'Idempotency-Key': key };
      let mustCharge = true;
      if (job.attemptsMade > 0) { // outcome of an earlier attempt may be unknown: ask first
        const r = await gw.request('GET', `/charges/${encodeURIComponent(key)}`, hdr);
        if (r.status === 200) {
          const b = parseJsonObject(r.body);
          if (!b || typeof b.status !== 'string') throw new Error(`gateway: GET 200 with unreadable body`);
          if (b.status === 'succeeded') { mustCharge = false; paymentId = b.id || null; }
          else if (b.status === 'declined') return failWith('payment_declined', stockKey, resvKey, codes);
          else throw new Error(`gateway: charge status '${b.status}'`); // pending etc.: transient
        } else if (r.status !== 404) {
          throw transient(`gateway: GET status ${r.status}`, r);
        }
      }
      if (mustCharge) {
        const body = JSON.stringify({ order_id: o.order_id, amount: o.amount, currency: o.currency, buyer: o.buyer });
        const r = await gw.request('POST', '/charges', hdr, body);
        const s = r.status;
        if (s === 200) {
          const b = parseJsonObject(r.body);
          if (!b || b.status !== 'succeeded') throw new Error('gateway: POST 200 with unreadable body');
          paymentId = b.id || null;
        } else if (s === 202) {
          throw new Error('gateway: 202 pending'); // treated as transient (see README)
        } else if (s === 402) {
          return failWith('payment_declined', stockKey, resvKey, codes);
        } else if (s === 403) {
          return failWith('risk_rejected', stockKey, resvKey, codes);
        } else if (s === 409) {
          return failWith('idempotency_conflict', stockKey, resvKey, codes);
        } else if (s === 429 || s >= 500) {
          throw transient(`gateway: transient status ${s}`, r);
        } else if (s >= 400 && s < 500) {
          return failWith('invalid_order', stockKey, resvKey, codes, { http_status: s });
        } else {
          throw new Error(`gateway: unexpected status ${s}`);
        }
      }
    }

    // (4) deliver: BullMQ stores the return value in the job hash
    return paymentId ? { codes, payment_id: paymentId } : { codes };
  }

  const base = cfg.retryBaseMs;
  const cap = cfg.retryCapMs;
  const worker = new Worker(QUEUE, processOrder, {
    connection: redisConn(cfg, { maxRetriesPerRequest: null }),
    prefix: P,
    concurrency: cfg.concurrency,
    settings: {
      // full jitter: random(0, min(cap, base * 2^attemptsMade)); BullMQ passes the number of
      // attempts made so far, i.e. 1 for the first retry.
      // --honor-retry-after: at least the gateway's Retry-After (delta-seconds), as faka waits.
      backoffStrategy: (attemptsMade, type, err) => {
        const d = Math.floor(Math.random() * Math.min(cap, base * Math.pow(2, attemptsMade)));
        return err && err.retryAfterMs > d ? err.retryAfterMs : d;
      },
    },
  });
  let processed = 0;
  let attemptErrors = 0;
  worker.on('completed', () => { processed++; });
  worker.on('failed', () => { attemptErrors++; });
  worker.on('error', (e) => process.stderr.write(`bullbench worker ${process.pid}: ${e.message}\n`));

  await worker.waitUntilReady();
  await cmd.ping();
  process.send({ type: 'ready', pid: process.pid });

  let stopping = false;
  async function stop() {
    if (stopping) return;
    stopping = true;
    clearInterval(sampler);
    const r = process.memoryUsage().rss;
    if (r > rssPeak) rssPeak = r;
    const stats = {
      type: 'stats', pid: process.pid, rss_peak_kb: Math.round(rssPeak / 1024),
      vm_hwm_kb: vmHwmKb(), processed, attempt_errors: attemptErrors,
    };
    try { await worker.close(); } catch (e) { /* ignore */ }
    try { await cmd.quit(); } catch (e) { cmd.disconnect(); }
    if (gw) gw.agent.destroy();
    if (process.connected) process.send(stats, () => process.disconnect());
  }
  process.on('message', (m) => { if (m && m.type === 'stop') stop(); });
  process.on('disconnect', () => { if (!stopping) { stopping = true; process.exit(1); } });
}

// ---------------------------------------------------------------- coordinator role

function parseInfo(text) {
  const o = {};
  for (const line of text.split('\r\n')) {
    if (!line || line[0] === '#') continue;
    const i = line.indexOf(':');
    if (i > 0) o[line.slice(0, i)] = line.slice(i + 1);
  }
  return o;
}

async function redisSnapshot(admin) {
  const [cs, cpu, mem] = await Promise.all([admin.info('commandstats'), admin.info('cpu'), admin.info('memory')]);
  const calls = {};
  let total = 0;
  for (const [k, v] of Object.entries(parseInfo(cs))) {
    const m = /calls=(\d+)/.exec(v);
    if (k.startsWith('cmdstat_') && m) { calls[k.slice(8)] = Number(m[1]); total += Number(m[1]); }
  }
  const c = parseInfo(cpu);
  const m = parseInfo(mem);
  return {
    calls, total,
    cpu: Number(c.used_cpu_sys) + Number(c.used_cpu_user),
    mem: Number(m.used_memory),
  };
}

async function scanUnlink(admin, prefix) {
  let cursor = '0';
  let n = 0;
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) { await admin.unlink(...keys); n += keys.length; }
  } while (cursor !== '0');
  return n;
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

async function probeGateway(url, timeoutMs) {
  const gw = makeHttp(url, timeoutMs, 1);
  try {
    await gw.request('GET', `/charges/${encodeURIComponent('bullbench-probe-' + process.pid)}`, {});
  } finally {
    gw.agent.destroy();
  }
}

async function coordinatorMain() {
  const cfg = parseArgs(process.argv.slice(2));
  const IORedis = require('ioredis');
  const { Queue } = require('bullmq');

  // Redis reachable, and new enough for LPOP key count (6.2)?
  const admin = new IORedis(redisConn(cfg, {
    lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 1,
    retryStrategy: () => null, enableOfflineQueue: false,
  }));
  let lastErr = null;
  admin.on('error', (e) => { lastErr = e; });
  try {
    await admin.connect();
    await admin.ping();
  } catch (e) {
    admin.disconnect();
    die(2, `cannot reach Redis at ${cfg.redis}: ${(lastErr || e).message}`);
  }
  const server = parseInfo(await admin.info('server'));
  const ver = (server.redis_version || '0').split('.').map(Number);
  if (ver[0] < 6 || (ver[0] === 6 && ver[1] < 2)) {
    admin.disconnect();
    die(2, `Redis ${server.redis_version} is too old: need >= 6.2 (LPOP with count)`);
  }
  if (cfg.mode === 'gateway') {
    try { await probeGateway(cfg.gatewayUrl, Math.min(cfg.httpTimeoutMs, 3000)); } catch (e) {
      admin.disconnect();
      die(2, `cannot reach gateway at ${cfg.gatewayUrl}: ${e.message}`);
    }
  }

  // Flush only our own keys, then load stock: exactly what the orders need, plus a few spare.
  const P = cfg.prefix;
  await scanUnlink(admin, P);
  const need = Object.fromEntries(SKUS.map((s) => [s, 0]));
  for (let n = 1; n <= cfg.orders; n++) { const o = orderFor(n); need[o.sku] += o.qty; }
  for (const sku of SKUS) {
    const total = Math.max(0, need[sku] + cfg.stockSpare);
    for (let i = 0; i < total; i += 1000) {
      const codes = [];
      for (let j = i; j < Math.min(total, i + 1000); j++) codes.push(`code-${sku}-${j}`);
      await admin.rpush(`${P}:stock:${sku}`, ...codes);
    }
  }

  const queue = new Queue(QUEUE, { connection: redisConn(cfg, { maxRetriesPerRequest: null }), prefix: P });
  queue.on('error', (e) => process.stderr.write(`bullbench: queue: ${e.message}\n`));
  await queue.waitUntilReady();

  // Start P worker processes and wait until every one is connected and ready.
  const workerCfg = {
    redisOpts: cfg.redisOpts, prefix: P, mode: cfg.mode, gatewayUrl: cfg.gatewayUrl,
    concurrency: cfg.concurrency, retryBaseMs: cfg.retryBaseMs, retryCapMs: cfg.retryCapMs,
    httpTimeoutMs: cfg.httpTimeoutMs, honorRetryAfter: cfg.honorRetryAfter,
  };
  const children = [];
  const stats = new Map();
  let finished = false;
  let childDied = null;
  const readyAll = Promise.all(Array.from({ length: cfg.processes }, () => new Promise((resolve, reject) => {
    const child = fork(__filename, [], {
      env: Object.assign({}, process.env, { BULLBENCH_ROLE: 'worker', BULLBENCH_CFG: JSON.stringify(workerCfg) }),
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    children.push(child);
    child.on('message', (m) => {
      if (m && m.type === 'ready') resolve();
      else if (m && m.type === 'stats') stats.set(m.pid, m);
    });
    child.exitPromise = new Promise((res) => child.on('exit', (code, sig) => {
      if (!finished && !childDied) childDied = `worker ${child.pid} exited (code ${code}, signal ${sig}) during the run`;
      reject(new Error(childDied || 'worker exited'));
      res();
    }));
  })));
  const killAll = () => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL'); };
  process.on('SIGINT', () => { killAll(); process.exit(130); });
  process.on('SIGTERM', () => { killAll(); process.exit(143); });
  try {
    await Promise.race([readyAll, new Promise((_, rej) => setTimeout(() => rej(new Error('workers not ready after 30 s')), 30000).unref())]);
  } catch (e) {
    killAll();
    die(4, e.message);
  }

  const before = await redisSnapshot(admin);
  const jobOpts = { attempts: cfg.attempts, backoff: { type: 'faka-full-jitter' } };

  // ---- measured run: from the first addBulk to the last job completed or failed
  const t0 = Date.now();
  const produce = (async () => {
    for (let i = 1; i <= cfg.orders; i += ADD_CHUNK) {
      const batch = [];
      for (let n = i; n < Math.min(cfg.orders + 1, i + ADD_CHUNK); n++) {
        batch.push({ name: 'order', data: orderFor(n), opts: jobOpts });
      }
      await queue.addBulk(batch);
    }
  })();
  let timedOut = false;
  let produceErr = null;
  produce.catch((e) => { produceErr = e; });
  const deadline = t0 + cfg.timeoutS * 1000;
  let polls = 0;
  for (;;) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    if (produceErr) { killAll(); die(2, `producer failed: ${produceErr.message}`); }
    if (childDied) { killAll(); die(4, childDied); }
    const c = await queue.getJobCounts('completed', 'failed');
    polls++;
    if (c.completed + c.failed >= cfg.orders) break;
    if (Date.now() > deadline) { timedOut = true; break; }
  }
  const tDone = Date.now();
  await produce;
  const after = await redisSnapshot(admin);
  finished = true;

  // ---- stop workers, collect their memory figures
  for (const c of children) if (c.connected) c.send({ type: 'stop' });
  await Promise.race([
    Promise.all(children.map((c) => c.exitPromise)),
    new Promise((r) => setTimeout(r, 15000).unref()),
  ]);
  killAll();

  // ---- read every job back (not measured): latency and outcome
  const lat = [];
  const fin = []; // final, ms after the first submission
  let lastFinished = 0;
  const outcome = { completed: 0, failed: 0, duplicates: 0, bull_failed: 0, reasons: {}, retries: 0 };
  const seenCodes = new Set();
  let codesDelivered = 0;
  let codesDuplicated = 0;
  for (const state of ['completed', 'failed']) {
    for (let start = 0; ; start += READ_PAGE) {
      const jobs = await queue.getJobs([state], start, start + READ_PAGE - 1, true);
      if (!jobs.length) break;
      for (const j of jobs) {
        if (!j) continue;
        if (j.finishedOn) {
          lat.push(j.finishedOn - j.timestamp);
          fin.push(j.finishedOn - t0);
          if (j.finishedOn > lastFinished) lastFinished = j.finishedOn;
        }
        outcome.retries += Math.max(0, (j.attemptsMade || 0) - 1);
        const rv = j.returnvalue;
        if (state === 'failed') {
          outcome.failed++; outcome.bull_failed++;
          outcome.reasons.retries_exhausted = (outcome.reasons.retries_exhausted || 0) + 1;
        } else if (rv && Array.isArray(rv.codes)) {
          outcome.completed++;
          for (const c of rv.codes) {
            codesDelivered++;
            if (seenCodes.has(c)) codesDuplicated++; else seenCodes.add(c);
          }
        } else if (rv && rv.duplicate) {
          outcome.duplicates++;
          outcome.failed++;
          outcome.reasons.duplicate = (outcome.reasons.duplicate || 0) + 1;
        } else {
          outcome.failed++;
          const r = (rv && rv.failed) || 'unknown';
          outcome.reasons[r] = (outcome.reasons[r] || 0) + 1;
        }
      }
      if (jobs.length < READ_PAGE) break;
    }
  }
  lat.sort((a, b) => a - b);
  fin.sort((a, b) => a - b);
  const endMs = timedOut || !lastFinished ? tDone : lastFinished;
  const seconds = (endMs - t0) / 1000;

  const perProc = [...stats.values()].map((s) => Math.max(s.rss_peak_kb, s.vm_hwm_kb));
  const cmdDelta = {};
  for (const [k, v] of Object.entries(after.calls)) {
    const d = v - (before.calls[k] || 0);
    if (d > 0) cmdDelta[k] = d;
  }
  const top = Object.entries(cmdDelta).sort((a, b) => b[1] - a[1]).slice(0, 12);

  const result = {
    system: 'bullmq',
    mode: cfg.mode,
    processes: cfg.processes,
    orders: cfg.orders,
    completed: outcome.completed,
    failed: outcome.failed,
    seconds: Number(seconds.toFixed(3)),
    orders_per_s: Number((cfg.orders / seconds).toFixed(1)),
    latency_ms: { p50: percentile(lat, 50), p99: percentile(lat, 99) },
    final_at_ms: { p50: percentile(fin, 50), p90: percentile(fin, 90), p99: percentile(fin, 99) },
    worker_peak_rss_kb: perProc.reduce((a, b) => a + b, 0),
    redis_cmds: after.total - before.total,
    redis_cpu_s: Number((after.cpu - before.cpu).toFixed(3)),
    redis_mem_per_job_bytes: Math.round((after.mem - before.mem) / cfg.orders),
    // extras (not part of the common schema)
    worker_peak_rss_kb_max_process: perProc.length ? Math.max(...perProc) : 0,
    worker_stats_missing: cfg.processes - stats.size,
    concurrency: cfg.concurrency,
    attempts: cfg.attempts,
    retry_base_ms: cfg.retryBaseMs,
    retry_cap_ms: cfg.retryCapMs,
    honor_retry_after: cfg.honorRetryAfter,
    retries: outcome.retries,
    reasons: outcome.reasons,
    bull_failed: outcome.bull_failed,
    codes_delivered: codesDelivered,
    codes_delivered_twice: codesDuplicated,
    latency_ms_max: lat.length ? lat[lat.length - 1] : null,
    end_detect_lag_ms: tDone - endMs,
    count_polls: polls,
    redis_cmds_top: Object.fromEntries(top),
    timed_out: timedOut,
    bullmq_version: bullVersion(),
    node_version: process.version,
    redis_version: server.redis_version,
  };
  process.stdout.write(JSON.stringify(result) + '\n');

  if (cfg.cleanup) await scanUnlink(admin, P);
  await queue.close();
  await admin.quit();
  if (timedOut) {
    process.stderr.write(`bullbench: timed out after ${cfg.timeoutS} s (${outcome.completed + outcome.failed}/${cfg.orders} done)\n`);
    process.exitCode = 3;
  }
}

if (process.env.BULLBENCH_ROLE === 'worker') {
  workerMain().catch((e) => {
    process.stderr.write(`bullbench worker ${process.pid}: ${e && e.stack || e}\n`);
    process.exit(1);
  });
} else {
  coordinatorMain().catch((e) => {
    process.stderr.write(`bullbench: ${e && e.stack || e}\n`);
    process.exit(1);
  });
}
