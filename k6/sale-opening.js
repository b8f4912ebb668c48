// A sale opening: a crowd pre-queues for a scheduled event over a minute, the sale opens, and
// the line is let in at the room's rate. Each VU plays PER_VU visitors (a VU a visitor would take
// tens of gigabytes for a crowd of 20,000): it joins them at random moments of the pre-queue,
// polls each at the interval the server recommends (http.batch, the due ones together), lets
// each admitted one through the gate once and leaves at once. An observer reads the room's
// numbers every second.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e ADMIN_KEY=... k6/sale-opening.js
//
// Parameters (-e; all optional but ADMIN_KEY):
//   VISITORS          the crowd                                          [20000]
//   PER_VU            visitors per VU                                    [100]
//   PREQUEUE_S        how long the pre-queue is open before the sale; joins spread over it  [60]
//   MAX_ACTIVE, ADMIT_PER_MINUTE, SHARDS   the room                      [1000, 6000, 4]
//   MAX_WAIT_S        a visitor gives up (and fails) this long after the opening  [900]
//   SHUFFLE           set: the event shuffles its pre-queue at the opening                [unset]
//   MODE              the event's queue mode (`random`: each admission a draw)          [fifo]
//
// Custom metrics: wait_after_opening_ms (the opening to the visitor's admission, as the visitor
// saw it: min is the time to the first admission), admitted_before_opening (must stay 0),
// got_in (rate), admissions_per_minute (the observer: admissions from the first one on, over the
// time until the line was empty); the observer also logs the room's numbers each second, a JSON
// line each (since_opening_s, admitted, waiting), for the report's chart.
import http from 'k6/http';
import { sleep } from 'k6';
import exec from 'k6/execution';
import { Counter, Rate, Trend } from 'k6/metrics';

const env = (name, fallback) => (__ENV[name] === undefined || __ENV[name] === '' ? fallback : __ENV[name]);
const num = (name, fallback) => parseFloat(env(name, String(fallback)));
const BASE_URL = env('BASE_URL', 'http://127.0.0.1:8080').replace(/\/$/, '');
const ADMIN_KEY = env('ADMIN_KEY', '');
const ROOM = env('ROOM', 'sale');
const SHUFFLE = env('SHUFFLE', '') !== '';
const MODE = env('MODE', 'fifo');
const VISITORS = num('VISITORS', 20000);
const PER_VU = num('PER_VU', 100);
const PREQUEUE_S = num('PREQUEUE_S', 60);
const MAX_WAIT_S = num('MAX_WAIT_S', 900);
const ROOM_CONFIG = {
  paths: [`/${ROOM}`],
  max_active: num('MAX_ACTIVE', 1000),
  admit_per_minute: num('ADMIT_PER_MINUTE', 6000),
  shards: num('SHARDS', 4),
};
const VUS = Math.ceil(VISITORS / PER_VU);
// The opening comes a few seconds after the last join of the pre-queue.
const OPEN_AFTER_MS = PREQUEUE_S * 1000 + 5000;
const RUN_S = PREQUEUE_S + 5 + MAX_WAIT_S + 30;

const waitAfterOpening = new Trend('wait_after_opening_ms', true);
const admittedBeforeOpening = new Counter('admitted_before_opening');
const gotIn = new Rate('got_in');
const perMinute = new Trend('admissions_per_minute');
const retried = new Counter('retried_after_503');

export const options = {
  discardResponseBodies: false,
  setupTimeout: '60s',
  scenarios: {
    crowd: { executor: 'per-vu-iterations', vus: VUS, iterations: 1, maxDuration: `${RUN_S}s` },
    observer: { executor: 'per-vu-iterations', vus: 1, iterations: 1, maxDuration: `${RUN_S}s`, exec: 'observe' },
  },
  thresholds: {
    got_in: ['rate>=1'],
    admitted_before_opening: ['count==0'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'max'],
};

const admin = () => ({ headers: { Authorization: `Bearer ${ADMIN_KEY}`, 'Content-Type': 'application/json' } });

export function setup() {
  if (!ADMIN_KEY) {
    throw new Error('ADMIN_KEY is needed: setup creates the room and its event');
  }
  const room = http.put(`${BASE_URL}/_qg/v1/admin/rooms/${ROOM}`, JSON.stringify(ROOM_CONFIG), admin());
  if (room.status !== 200 && room.status !== 201) {
    throw new Error(`could not set up room ${ROOM}: ${room.status} ${room.body}`);
  }
  const startedAt = Date.now();
  const opensAt = startedAt + OPEN_AFTER_MS;
  const event = { prequeue_at: startedAt, start_at: opensAt, end_at: opensAt + RUN_S * 1000, shuffle: SHUFFLE, mode: MODE };
  const res = http.put(`${BASE_URL}/_qg/v1/admin/rooms/${ROOM}/events/opening`, JSON.stringify(event), admin());
  if (res.status !== 201) {
    throw new Error(`could not schedule the opening: ${res.status} ${res.body}`);
  }
  return { startedAt, opensAt };
}

// A VU plays many visitors: each request gets a jar of its own, or the VU's jar would send one
// visitor's ticket cookie with the next one's join (and the server answer for that place).
function ownJar() {
  return new http.CookieJar();
}

function json(res) {
  try {
    return res.json();
  } catch (e) {
    return {};
  }
}

// Sends the requests (k6 batch form) and answers their responses; a 503 that says when to come
// back (wrangler dev's proxy drops a POST now and then) is sent again once, after a second.
function send(requests) {
  const responses = http.batch(requests);
  const again = [];
  responses.forEach((res, i) => {
    if (res.status === 503 && res.headers['Retry-After'] !== undefined) {
      again.push(i);
    }
  });
  if (again.length > 0) {
    retried.add(again.length);
    sleep(1);
    const resent = http.batch(again.map((i) => requests[i]));
    again.forEach((i, k) => {
      responses[i] = resent[k];
    });
  }
  return responses;
}

export default function (data) {
  const first = exec.vu.idInTest - 1;
  const count = Math.min(PER_VU, VISITORS - first * PER_VU);
  const visitors = [];
  for (let i = 0; i < count; i++) {
    visitors.push({ joinAt: data.startedAt + Math.random() * PREQUEUE_S * 1000, next: 0, ticket: null, done: false });
  }
  visitors.sort((a, b) => a.joinAt - b.joinAt);
  const giveUpAt = data.opensAt + MAX_WAIT_S * 1000;
  let left = count;
  while (left > 0 && Date.now() < giveUpAt) {
    const now = Date.now();
    const joining = visitors.filter((v) => !v.done && v.ticket === null && v.joinAt <= now);
    const polling = visitors.filter((v) => !v.done && v.ticket !== null && v.next <= now);
    const requests = joining
      .map(() => ({ method: 'POST', url: `${BASE_URL}/_qg/v1/rooms/${ROOM}/join`, body: null, params: { jar: ownJar(), tags: { name: 'join' } } }))
      .concat(polling.map((v) => ({
        method: 'GET',
        url: `${BASE_URL}/_qg/v1/rooms/${ROOM}/status`,
        params: { headers: { Authorization: `Bearer ${v.ticket}` }, jar: ownJar(), tags: { name: 'poll' } },
      })));
    const answered = requests.length > 0 ? send(requests) : [];
    const seen = Date.now();
    const leaving = [];
    joining.concat(polling).forEach((v, i) => {
      const res = answered[i];
      const body = json(res);
      if (res.status !== 200) {
        v.next = seen + 1000;
        if (v.ticket === null) {
          v.joinAt = seen + 1000;
        }
        return;
      }
      if (body.ticket) {
        v.ticket = body.ticket;
      }
      if (body.status === 'waiting') {
        v.next = seen + (body.poll_after_ms || 1000);
      } else if (body.status === 'admitted' && body.pass) {
        if (seen < data.opensAt) {
          admittedBeforeOpening.add(1);
        }
        waitAfterOpening.add(Math.max(0, seen - data.opensAt));
        gotIn.add(true);
        v.done = true;
        left -= 1;
        leaving.push(v);
        v.pass = body.pass;
      } else {
        // Left or expired: this visitor is lost.
        gotIn.add(false);
        v.done = true;
        left -= 1;
      }
    });
    if (leaving.length > 0) {
      send(leaving.map((v) => ({
        method: 'POST',
        url: `${BASE_URL}/_qg/v1/rooms/${ROOM}/leave`,
        body: null,
        params: { headers: { Authorization: `Bearer ${v.pass}` }, jar: ownJar(), tags: { name: 'leave' } },
      })));
    }
    const pending = visitors.filter((v) => !v.done);
    if (pending.length === 0) {
      break;
    }
    const due = Math.min(...pending.map((v) => (v.ticket === null ? v.joinAt : v.next)));
    const pause = Math.max(0.05, Math.min(1, (due - Date.now()) / 1000));
    sleep(pause);
  }
  visitors.filter((v) => !v.done).forEach(() => gotIn.add(false));
}

// The room's admitted_total every second, from the opening until the line is empty: the
// admissions per minute from the first admission on.
export function observe(data) {
  let firstAt = null;
  let firstTotal = 0;
  for (;;) {
    const res = http.get(`${BASE_URL}/_qg/v1/admin/rooms/${ROOM}`, Object.assign({ tags: { name: 'observe' } }, admin()));
    const now = Date.now();
    if (res.status === 200) {
      const stats = json(res).stats || {};
      const total = stats.admitted_total || 0;
      // For the report's chart: one JSON line a second.
      console.log(JSON.stringify({ since_opening_s: (now - data.opensAt) / 1000, admitted: total, waiting: stats.waiting || 0 }));
      if (firstAt === null && total > 0) {
        firstAt = now;
        firstTotal = total;
      }
      const emptied = firstAt !== null && (stats.waiting || 0) === 0;
      if (emptied || now > data.opensAt + MAX_WAIT_S * 1000) {
        if (firstAt !== null && now - firstAt >= 10000) {
          perMinute.add(((total - firstTotal) * 60000) / (now - firstAt));
        }
        return;
      }
    }
    sleep(1);
  }
}
