// The load for scripts/bench-streams.sh: STREAMS visitors join a paused room and each opens its
// update stream (GET .../stream, one connection each); then the room is read idle, and then an
// operator admits BATCH visitors every 1.5 to 2.5 s, BATCHES times. Measured from the outside:
//
//   memory   the server's resident memory (VmRSS of PIDS, summed) before and with the streams open
//   cpu      the server's CPU time (utime + stime of PIDS) per second, idle and while admitting
//   latency  from each admission call to each event it caused: the admitted visitors' `admitted`
//            and everyone else's new position
//
// Writes a JSON summary to OUT. Environment: BASE_URL, ADMIN_KEY, STREAMS, PIDS (space-separated),
// OUT, and optionally BATCH (100), BATCHES (10), IDLE_S (20), OPEN_CONCURRENCY (200).
import http from 'node:http';
import fs from 'node:fs';

const BASE = process.env.BASE_URL;
const ADMIN_KEY = process.env.ADMIN_KEY;
const STREAMS = Number(process.env.STREAMS || 10000);
const PIDS = (process.env.PIDS || '').split(/\s+/).filter(Boolean).map(Number);
const OUT = process.env.OUT;
const BATCH = Number(process.env.BATCH || 100);
const BATCHES = Number(process.env.BATCHES || 10);
const IDLE_S = Number(process.env.IDLE_S || 20);
const OPEN_CONCURRENCY = Number(process.env.OPEN_CONCURRENCY || 200);
const ROOM = `streams-${Date.now()}`;
const API = `${BASE}/_qg/v1`;
const TICKS_PER_S = 100; // USER_HZ on Linux

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const started = Date.now();
const log = (...args) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s]`, ...args);
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });

function rssKiB() {
  let total = 0;
  for (const pid of PIDS) {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    total += Number(m[1]);
  }
  return total;
}

function cpuSeconds() {
  let ticks = 0;
  for (const pid of PIDS) {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
  }
  return ticks / TICKS_PER_S;
}

async function call(method, path, body, bearer) {
  const headers = { 'content-type': 'application/json' };
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch(`${API}${path}`, { method, headers, body: body && JSON.stringify(body) });
      const text = await res.text();
      if (res.status >= 500 && attempt < 5) { await sleep(200); continue; }
      return { status: res.status, body: text ? JSON.parse(text) : null };
    } catch (e) {
      if (attempt >= 5) throw e;
      await sleep(200);
    }
  }
}

async function pool(n, concurrency, task) {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, async () => {
    while (next < n) await task(next++);
  }));
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const visitors = [];
let batchTimes = [];
let failedOpens = 0;
let brokenStreams = 0;
const admissionLatencies = [];
const positionLatencies = [];

function lastBatchBefore(t) {
  for (let i = batchTimes.length - 1; i >= 0; i--) if (batchTimes[i] <= t) return batchTimes[i];
  return null;
}

function openStream(v) {
  return new Promise((resolve) => {
    const req = http.get(`${API}/rooms/${ROOM}/stream`, { agent, headers: { authorization: `Bearer ${v.ticket}` } }, (res) => {
      if (res.statusCode !== 200) {
        failedOpens++;
        res.resume();
        resolve();
        return;
      }
      res.setEncoding('utf8');
      let buffer = '';
      res.on('data', (chunk) => {
        buffer += chunk;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (/^event: heartbeat$/m.test(frame)) continue;
          const data = /^data: (.*)$/m.exec(frame);
          if (!data) continue;
          const now = Date.now();
          const body = JSON.parse(data[1]);
          if (!v.first) { v.first = now; resolve(); continue; }
          const batch = lastBatchBefore(now);
          if (batch === null) continue;
          if (body.status === 'admitted') admissionLatencies.push(now - batch);
          else if (body.status === 'waiting' && body.position !== v.position) positionLatencies.push(now - batch);
          v.position = body.position;
        }
      });
      res.on('end', () => { v.ended = true; });
      res.on('error', () => { brokenStreams++; });
    });
    req.on('error', () => { failedOpens++; resolve(); });
    v.request = req;
  });
}

async function main() {
  let reply = await call('PUT', `/admin/rooms/${ROOM}`, { max_active: 1000000, admit_per_minute: 1000000, shards: 4, ticket_ttl_s: 3600 }, ADMIN_KEY);
  if (reply.status >= 300) throw new Error(`room: ${JSON.stringify(reply)}`);
  await call('POST', `/admin/rooms/${ROOM}/pause`, null, ADMIN_KEY);
  await pool(STREAMS, 100, async (i) => {
    const r = await call('POST', `/rooms/${ROOM}/join`, {});
    if (r.status !== 200 || !r.body.ticket) throw new Error(`join ${i}: ${JSON.stringify(r)}`);
    visitors.push({ ticket: r.body.ticket, position: r.body.position });
  });
  log(`${visitors.length} joined room ${ROOM}`);
  await sleep(2000);
  const rssBefore = rssKiB();
  const openedAt = Date.now();
  await pool(visitors.length, OPEN_CONCURRENCY, (i) => openStream(visitors[i]));
  const openS = (Date.now() - openedAt) / 1000;
  const open = visitors.filter((v) => v.first).length;
  log(`${open} streams open in ${openS.toFixed(1)} s (${failedOpens} refused or failed)`);
  await sleep(5000);
  const rssOpen = rssKiB();
  const cpuIdle0 = cpuSeconds();
  const idleFrom = Date.now();
  await sleep(IDLE_S * 1000);
  const idleCpu = (cpuSeconds() - cpuIdle0) / ((Date.now() - idleFrom) / 1000);
  log(`idle: ${(idleCpu * 100).toFixed(1)} % of a core; RSS ${rssBefore} -> ${rssOpen} KiB`);

  const cpuAdmit0 = cpuSeconds();
  const admitFrom = Date.now();
  let admitted = 0;
  for (let b = 0; b < BATCHES; b++) {
    batchTimes.push(Date.now());
    const r = await call('POST', `/admin/rooms/${ROOM}/admit`, { count: BATCH }, ADMIN_KEY);
    admitted += r.body?.admitted ?? 0;
    // Off the streams' one-second beat, so that the latencies sample every moment of it.
    await sleep(1500 + Math.random() * 1000);
  }
  await sleep(2000);
  const admitCpu = (cpuSeconds() - cpuAdmit0) / ((Date.now() - admitFrom) / 1000);
  const rssEnd = rssKiB();
  const stillOpen = visitors.filter((v) => v.first && !v.ended).length;
  for (const v of visitors) v.request?.destroy();
  admissionLatencies.sort((a, b) => a - b);
  positionLatencies.sort((a, b) => a - b);
  const summary = {
    streams: STREAMS,
    open,
    failed_opens: failedOpens,
    broken: brokenStreams,
    open_seconds: openS,
    rss_before_kib: rssBefore,
    rss_open_kib: rssOpen,
    rss_end_kib: rssEnd,
    bytes_per_stream: open ? Math.round(((rssOpen - rssBefore) * 1024) / open) : null,
    idle_cpu_cores: idleCpu,
    admitting_cpu_cores: admitCpu,
    admitted,
    still_open_after: stillOpen,
    admission_events: admissionLatencies.length,
    admission_ms: { p50: percentile(admissionLatencies, 50), p90: percentile(admissionLatencies, 90), p99: percentile(admissionLatencies, 99), max: admissionLatencies.at(-1) ?? null },
    position_events: positionLatencies.length,
    position_ms: { p50: percentile(positionLatencies, 50), p90: percentile(positionLatencies, 90), p99: percentile(positionLatencies, 99), max: positionLatencies.at(-1) ?? null },
  };
  log(JSON.stringify(summary));
  if (OUT) fs.writeFileSync(OUT, JSON.stringify(summary, null, 2));
  if (open < STREAMS || admissionLatencies.length < admitted) process.exitCode = 1;
  agent.destroy();
}

main().catch((e) => { console.error(e); process.exit(1); });
