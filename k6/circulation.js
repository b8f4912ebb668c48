// The whole visitor cycle under load: visitors arrive at a constant rate, join, poll at the
// interval the server recommends until they are admitted, open a protected page with their pass,
// stay a while (coming back to the site now and then), and leave; meanwhile the scheduler lets
// the next ones in as rate and capacity allow. An observer reads the room's stats every second.
// Thresholds fail the run.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e ADMIN_KEY=... k6/circulation.js
//
// Parameters (environment variables via -e; all optional but ADMIN_KEY):
//   BASE_URL          the server (origin or edge)                        [http://127.0.0.1:8080]
//   ADMIN_KEY         the admin key: setup() creates the room, the observer reads its stats
//   ROOM              the room                                           [circulation]
//   MAX_ACTIVE, ADMIT_PER_MINUTE, SHARDS   the room's configuration      [100, 600, 4]
//   PROTECTED_PATH    the path the room protects                         [/cycle]
//   ARRIVAL_RATE      visitors arriving per second                       [15]
//   DURATION_S        how long visitors arrive                           [120]
//   STAY_S            how long a visitor stays once in                   [5]
//   STAY_SPREAD       stays vary uniformly by this share either way (0.5: 50 % to 150 % of
//                     STAY_S), as people's do; with equal stays, visitors let in together leave
//                     together and slots free in waves                    [0]
//   PAGE_EVERY_S      a visitor in the site opens a page this often      [2]
//   MAX_WAIT_S        a visitor gives up (and fails) after waiting this long  [600]
//   MAX_VUS           the most VUs (each waiting visitor is one)         [3000]
//   PRE_VUS           VUs made before the start: starting VUs mid-run drops arrivals, so by
//                     default as many as the queue should ever need      [estimated, see below]
//   P95_MS, P99_MS    latency thresholds for join, poll, gate and leave  [100, 250]
//   MIN_SUCCESS       the share of visitors that must get in and leave   [1.0]
//   ESTIMATE_LOG      set: log each estimate shown and the wait that followed, a JSON line each
//   POLL_CAP_S        poll at least this often, whatever the server recommends, so that the
//                     moment of admission is known to within this much (the estimate runs)  [none]
//   ABANDON_SHARE     the share of arrivals who join and then never ask again (closed the tab):
//                     every 1/share-th arrival, so the others arrive as they would without them [0]
//   ABANDON_AFTER_S   the room's abandon_after_s (how long a place may go unseen)  [the room's default]
//
// Custom metrics: visitor_wait_ms (join to admission, as the visitor saw it), wait_estimate_error_s
// (the wait actually waited minus eta_seconds at join), wait_estimate_abs_error_s; the estimate
// shown at join and at every poll against the wait that followed it, as a share of that wait:
// estimate_rel_error_join, estimate_rel_error_first_minute and estimate_rel_error_after_a_minute
// (answers shown in and after the run's first minute; waits of under MIN_REL_WAIT_S, where a poll
// interval is most of the wait, are left out), estimate_unknown (the share of waiting answers
// with eta_seconds null), the moment of admission taken as midway between the last poll that
// said waiting and the one that said admitted; got_in and
// left_ok (rates), and from the observer room_active, room_admitted, room_waiting and
// room_admitted_total (with --out csv they are a time series), room_occupied (active + admitted,
// which max_active bounds); abandoners (arrivals who left at once), present_admitted and
// present_admitted_at_s (seconds since the start at which each present visitor was seen admitted:
// its min and max give the present visitors' admission rate).
import http from 'k6/http';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { Rate, Trend, Counter } from 'k6/metrics';

const env = (name, fallback) => (__ENV[name] === undefined || __ENV[name] === '' ? fallback : __ENV[name]);
const num = (name, fallback) => parseFloat(env(name, String(fallback)));
const BASE_URL = env('BASE_URL', 'http://127.0.0.1:8080').replace(/\/$/, '');
const ADMIN_KEY = env('ADMIN_KEY', '');
const ROOM = env('ROOM', 'circulation');
const PROTECTED_PATH = env('PROTECTED_PATH', '/cycle');
const ARRIVAL_RATE = num('ARRIVAL_RATE', 15);
const DURATION_S = num('DURATION_S', 120);
const STAY_S = num('STAY_S', 5);
const STAY_SPREAD = Math.min(1, Math.max(0, num('STAY_SPREAD', 0)));
const PAGE_EVERY_S = num('PAGE_EVERY_S', 2);
const MAX_WAIT_S = num('MAX_WAIT_S', 600);
const MAX_VUS = num('MAX_VUS', 3000);
const P95_MS = num('P95_MS', 100);
const P99_MS = num('P99_MS', 250);
const MIN_SUCCESS = num('MIN_SUCCESS', 1.0);
const POLL_CAP_S = num('POLL_CAP_S', 0);
const MIN_REL_WAIT_S = num('MIN_REL_WAIT_S', 10);
const ESTIMATE_LOG = env('ESTIMATE_LOG', '') !== '';
const ABANDON_SHARE = Math.min(1, Math.max(0, num('ABANDON_SHARE', 0)));
export const ROOM_CONFIG = {
  paths: [PROTECTED_PATH],
  max_active: num('MAX_ACTIVE', 100),
  admit_per_minute: num('ADMIT_PER_MINUTE', 600),
  shards: num('SHARDS', 4),
  session_ttl_s: 120,
  claim_window_s: 120,
};
if (env('ABANDON_AFTER_S', '') !== '') {
  ROOM_CONFIG.abandon_after_s = num('ABANDON_AFTER_S', 120);
}
// The last visitors must have time to get through the queue that built up.
const DRAIN_S = MAX_WAIT_S + STAY_S + 30;
// How many visitors are in the room at once, at most: those let in for their stay and a poll or
// two, and the backlog of arrivals beyond what rate and capacity let through.
const THROUGHPUT = Math.min(ROOM_CONFIG.admit_per_minute / 60, ROOM_CONFIG.max_active / Math.max(STAY_S, 1));
const BACKLOG = Math.max(0, ARRIVAL_RATE - THROUGHPUT) * DURATION_S;
const PRE_VUS = Math.min(MAX_VUS, num('PRE_VUS', Math.ceil(BACKLOG + ARRIVAL_RATE * (STAY_S + 15))));

const visitorWait = new Trend('visitor_wait_ms', true);
const estimateError = new Trend('wait_estimate_error_s');
const estimateAbsError = new Trend('wait_estimate_abs_error_s');
const relErrorJoin = new Trend('estimate_rel_error_join');
const relErrorFirstMinute = new Trend('estimate_rel_error_first_minute');
const relErrorAfterAMinute = new Trend('estimate_rel_error_after_a_minute');
// Signed: above 0, the estimate was longer than the wait.
const relBiasAfterAMinute = new Trend('estimate_rel_bias_after_a_minute');
const estimateUnknown = new Rate('estimate_unknown');
const gotIn = new Rate('got_in');
const leftOk = new Rate('left_ok');
const polls = new Counter('polls');
const retried = new Counter('retried_after_503');
const roomActive = new Trend('room_active');
const roomAdmitted = new Trend('room_admitted');
const roomWaiting = new Trend('room_waiting');
const roomAdmittedTotal = new Trend('room_admitted_total');
// Admissions nobody came for, ended and given back to the rate (the room's no_shows_total).
const roomNoShows = new Trend('room_no_shows');
const roomOccupied = new Trend('room_occupied');
const abandoners = new Counter('abandoners');
const presentAdmitted = new Counter('present_admitted');
const presentAdmittedAt = new Trend('present_admitted_at_s');

const latency = [`p(95)<${P95_MS}`, `p(99)<${P99_MS}`];
export const options = {
  discardResponseBodies: false,
  systemTags: ['status', 'method', 'name', 'scenario', 'expected_response'],
  scenarios: {
    visitors: {
      executor: 'constant-arrival-rate',
      rate: ARRIVAL_RATE,
      timeUnit: '1s',
      duration: `${DURATION_S}s`,
      preAllocatedVUs: PRE_VUS,
      maxVUs: MAX_VUS,
      gracefulStop: `${DRAIN_S}s`,
    },
    observer: {
      executor: 'per-vu-iterations',
      vus: 1,
      iterations: 1,
      maxDuration: `${DURATION_S + DRAIN_S + 30}s`,
      exec: 'observe',
    },
  },
  thresholds: {
    'http_req_duration{name:join}': latency,
    'http_req_duration{name:poll}': latency,
    'http_req_duration{name:gate}': latency,
    'http_req_duration{name:leave}': latency,
    got_in: [`rate>=${MIN_SUCCESS}`],
    left_ok: [`rate>=${MIN_SUCCESS}`],
    dropped_iterations: ['count==0'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

const adminHeaders = () => ({ Authorization: `Bearer ${ADMIN_KEY}`, 'Content-Type': 'application/json' });

export function setup() {
  if (!ADMIN_KEY) {
    throw new Error('ADMIN_KEY is needed: setup creates the room and the observer reads its stats');
  }
  const res = http.put(`${BASE_URL}/_qg/v1/admin/rooms/${ROOM}`, JSON.stringify(ROOM_CONFIG), {
    headers: adminHeaders(),
  });
  if (res.status !== 200 && res.status !== 201) {
    throw new Error(`could not set up room ${ROOM}: ${res.status} ${res.body}`);
  }
  return { startedAt: Date.now() };
}

const JOIN_URL = `${BASE_URL}/_qg/v1/rooms/${ROOM}/join`;
const STATUS_URL = `${BASE_URL}/_qg/v1/rooms/${ROOM}/status`;
const LEAVE_URL = `${BASE_URL}/_qg/v1/rooms/${ROOM}/leave`;
const PAGE_URL = `${BASE_URL}${PROTECTED_PATH}/page`;

function body(res) {
  try {
    return res.json();
  } catch (e) {
    return {};
  }
}

// A POST as a browser or an app should send it: a 503 that says when to come back (queuegate's
// own, with the store down and the policy failing closed; or wrangler dev's proxy, which drops
// a POST now and then: workers-sdk issue 14641) is sent again, at most twice. Joins (with a
// user id) and leaves are idempotent, so a retry cannot join twice or leave wrongly. Retries are
// counted in retried_after_503, and the summary shows them.
function postRetrying(url, payload, params) {
  let res = http.post(url, payload, params);
  for (let attempt = 0; attempt < 2 && res.status === 503 && res.headers['Retry-After'] !== undefined; attempt++) {
    retried.add(1);
    sleep(Math.min(5, Math.max(0.1, Number(res.headers['Retry-After']) || 0)));
    res = http.post(url, payload, params);
  }
  return res;
}

// One visitor's whole visit.
export default function (data) {
  const arrival = exec.scenario.iterationInTest;
  const user = `v-${arrival}`;
  // Every 1/ABANDON_SHARE-th arrival joins and is gone.
  const abandons = Math.floor((arrival + 1) * ABANDON_SHARE) > Math.floor(arrival * ABANDON_SHARE);
  const joinedAt = Date.now();
  // Every estimate shown while waiting: [when, eta_seconds].
  const shown = [];
  const joined = postRetrying(JOIN_URL, JSON.stringify({ user_id: user }), {
    headers: { 'Content-Type': 'application/json' },
    tags: { name: 'join' },
  });
  let answer = body(joined);
  if (!check(joined, { 'joined with a ticket': (r) => r.status === 200 && !!answer.ticket })) {
    gotIn.add(false);
    return;
  }
  if (abandons) {
    abandoners.add(1);
    return;
  }
  const ticket = answer.ticket;
  const etaAtJoin = answer.eta_seconds;
  const auth = { headers: { Authorization: `Bearer ${ticket}` } };
  let lastWaiting = joinedAt;
  while (answer.status === 'waiting') {
    lastWaiting = Date.now();
    shown.push([lastWaiting, answer.eta_seconds]);
    estimateUnknown.add(answer.eta_seconds === null || answer.eta_seconds === undefined);
    if ((Date.now() - joinedAt) / 1000 > MAX_WAIT_S) {
      break;
    }
    let pause = (answer.poll_after_ms || 1000) / 1000;
    if (POLL_CAP_S > 0) {
      pause = Math.min(pause, POLL_CAP_S);
    }
    sleep(pause);
    const res = http.get(STATUS_URL, Object.assign({ tags: { name: 'poll' } }, auth));
    polls.add(1);
    if (res.status !== 200) {
      continue;
    }
    answer = body(res);
  }
  const admitted = answer.status === 'admitted' && !!answer.pass;
  gotIn.add(admitted);
  if (!admitted) {
    check(answer, { 'admitted in time': () => false });
    return;
  }
  const waitedMs = Date.now() - joinedAt;
  visitorWait.add(waitedMs);
  presentAdmitted.add(1);
  presentAdmittedAt.add((Date.now() - data.startedAt) / 1000);
  if (etaAtJoin !== null && etaAtJoin !== undefined && joined.json('status') === 'waiting') {
    estimateError.add(waitedMs / 1000 - etaAtJoin);
    estimateAbsError.add(Math.abs(waitedMs / 1000 - etaAtJoin));
  }
  recordEstimates(shown, (lastWaiting + Date.now()) / 2, data.startedAt);

  // In the site: pages with the pass, now and then, for the length of the stay.
  const pass = { headers: { Cookie: `qg_pass_${ROOM}=${answer.pass}` }, tags: { name: 'gate' }, redirects: 0 };
  const stay = STAY_S * (1 - STAY_SPREAD + 2 * STAY_SPREAD * Math.random());
  const until = Date.now() + stay * 1000;
  let inside = true;
  do {
    const page = http.get(PAGE_URL, pass);
    inside = check(page, {
      'the pass lets the visitor through the gate': (r) =>
        r.status === 200 && r.headers['X-Queuegate-Status'] !== 'waiting',
    }) && inside;
    sleep(Math.min(PAGE_EVERY_S, Math.max(0, (until - Date.now()) / 1000)));
  } while (Date.now() < until);

  const left = postRetrying(LEAVE_URL, null, { headers: { Authorization: `Bearer ${answer.pass}` }, tags: { name: 'leave' } });
  leftOk.add(check(left, { 'left': (r) => r.status === 200 && body(r).status === 'left' }) && inside);
}

// Each estimate shown against the wait that followed it, as a share of that wait.
function recordEstimates(shown, admittedAt, startedAt) {
  shown.forEach(([at, eta], i) => {
    const remaining = (admittedAt - at) / 1000;
    if (eta === null || eta === undefined || remaining < MIN_REL_WAIT_S) {
      return;
    }
    const rel = Math.abs(eta - remaining) / remaining;
    if (ESTIMATE_LOG) {
      console.log(JSON.stringify({ since_start_s: (at - startedAt) / 1000, eta, remaining }));
    }
    if (i === 0) {
      relErrorJoin.add(rel);
    }
    if (at - startedAt >= 60000) {
      relErrorAfterAMinute.add(rel);
      relBiasAfterAMinute.add((eta - remaining) / remaining);
    } else {
      relErrorFirstMinute.add(rel);
    }
  });
}

// The observer: the room's stats, once a second, until the arrivals are over and the room is
// empty again.
export function observe() {
  const started = Date.now();
  for (;;) {
    const res = http.get(`${BASE_URL}/_qg/v1/admin/rooms/${ROOM}`, { headers: adminHeaders(), tags: { name: 'observe' } });
    if (res.status === 200) {
      const stats = body(res).stats || {};
      roomActive.add(stats.active || 0);
      roomAdmitted.add(stats.admitted || 0);
      roomWaiting.add(stats.waiting || 0);
      roomAdmittedTotal.add(stats.admitted_total || 0);
      roomNoShows.add(stats.no_shows_total || 0);
      roomOccupied.add((stats.active || 0) + (stats.admitted || 0));
      const elapsed = (Date.now() - started) / 1000;
      const empty = !stats.active && !stats.admitted && !stats.waiting;
      if ((elapsed > DURATION_S + 2 && empty) || elapsed > DURATION_S + DRAIN_S) {
        return;
      }
    }
    sleep(1);
  }
}
