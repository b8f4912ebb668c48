// The seed's scenario: a crowd arriving at a sale. Constant arrival rate, 1,000 joins/s for 10 s,
// then 5,000 joins/s for 60 s: 310,000 joins, each with its own user id, as the seed's service
// took them. Thresholds fail the run.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e ROOM=entry-scale -e ADMIN_KEY=... k6/entry-scale.js
//
// Parameters (all optional, environment variables via -e):
//   BASE_URL     the server (origin or edge)                   [http://127.0.0.1:8080]
//   ROOM         the room to join                               [entry-scale]
//   ADMIN_KEY    if set, setup() creates or updates the room with ROOM_CONFIG first
//   ROOM_CONFIG  the room's configuration as JSON               [see DEFAULT_ROOM below]
//   WARM_RATE, WARM_S, PEAK_RATE, PEAK_S   the two stages      [1000, 10, 5000, 60]
//   P95_MS, P99_MS   latency thresholds                         [10, 25]
//   MIN_SUCCESS  the share of joins that must succeed           [1.0]
//   MAX_DROPPED  iterations k6 may drop for want of VUs         [0]
//   WARM_VUS, PEAK_VUS  VUs allocated before each stage         [50, 150]
//   MAX_VUS      the most VUs k6 may use                        [600]
//   BASELINE     if 1, GET /_qg/v1/healthz instead of joining: the same load on a trivial route,
//                to tell what the load generator itself adds
//
// k6 itself needs more than a core at 5,000 requests/s. On a small machine shared with the server,
// fewer VUs (less garbage for Go to collect) and GOGC=400 keep the client from adding latency;
// see BENCHMARKS.md.
import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';

const env = (name, fallback) => (__ENV[name] === undefined || __ENV[name] === '' ? fallback : __ENV[name]);
const BASE_URL = env('BASE_URL', 'http://127.0.0.1:8080').replace(/\/$/, '');
const ROOM = env('ROOM', 'entry-scale');
const ADMIN_KEY = env('ADMIN_KEY', '');
const WARM_RATE = parseInt(env('WARM_RATE', '1000'), 10);
const WARM_S = parseInt(env('WARM_S', '10'), 10);
const PEAK_RATE = parseInt(env('PEAK_RATE', '5000'), 10);
const PEAK_S = parseInt(env('PEAK_S', '60'), 10);
const P95_MS = parseFloat(env('P95_MS', '10'));
const P99_MS = parseFloat(env('P99_MS', '25'));
const MIN_SUCCESS = parseFloat(env('MIN_SUCCESS', '1.0'));
const MAX_DROPPED = parseInt(env('MAX_DROPPED', '0'), 10);
const BASELINE = env('BASELINE', '0') === '1';
const MAX_VUS = parseInt(env('MAX_VUS', '600'), 10);
const WARM_VUS = parseInt(env('WARM_VUS', '50'), 10);
const PEAK_VUS = parseInt(env('PEAK_VUS', '150'), 10);

// A sale: most of the crowd waits while the scheduler lets a steady stream in.
const DEFAULT_ROOM = { max_active: 1000, admit_per_minute: 6000, shards: 4, paths: [] };
const ROOM_CONFIG = JSON.parse(env('ROOM_CONFIG', JSON.stringify(DEFAULT_ROOM)));

export const options = {
  // The check reads the status and the ticket cookie: the body need not reach JavaScript.
  discardResponseBodies: true,
  systemTags: ['status', 'method', 'name', 'scenario', 'expected_response'],
  scenarios: {
    warmup: {
      executor: 'constant-arrival-rate',
      rate: WARM_RATE,
      timeUnit: '1s',
      duration: `${WARM_S}s`,
      preAllocatedVUs: Math.min(MAX_VUS, WARM_VUS),
      maxVUs: MAX_VUS,
    },
    peak: {
      executor: 'constant-arrival-rate',
      rate: PEAK_RATE,
      timeUnit: '1s',
      duration: `${PEAK_S}s`,
      startTime: `${WARM_S}s`,
      preAllocatedVUs: Math.min(MAX_VUS, PEAK_VUS),
      maxVUs: MAX_VUS,
    },
  },
  thresholds: {
    checks: [`rate>=${MIN_SUCCESS}`],
    http_req_failed: [`rate<=${1 - MIN_SUCCESS}`],
    http_req_duration: [`p(95)<${P95_MS}`, `p(99)<${P99_MS}`],
    dropped_iterations: [`count<=${MAX_DROPPED}`],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  if (!ADMIN_KEY || BASELINE) {
    return;
  }
  const res = http.put(`${BASE_URL}/_qg/v1/admin/rooms/${ROOM}`, JSON.stringify(ROOM_CONFIG), {
    headers: { Authorization: `Bearer ${ADMIN_KEY}`, 'Content-Type': 'application/json' },
  });
  if (res.status !== 200 && res.status !== 201) {
    throw new Error(`could not set up room ${ROOM}: ${res.status} ${res.body}`);
  }
}

const JOIN_URL = `${BASE_URL}/_qg/v1/rooms/${ROOM}/join`;
const TICKET_COOKIE = `qg_ticket_${ROOM}=`;
const JOIN_PARAMS = { headers: { 'Content-Type': 'application/json' }, tags: { name: 'join' } };

const HEALTH_URL = `${BASE_URL}/_qg/v1/healthz`;
const HEALTH_PARAMS = { tags: { name: 'healthz' } };

export default function () {
  if (BASELINE) {
    check(http.get(HEALTH_URL, HEALTH_PARAMS), { 'trivial route answered': (r) => r.status === 200 });
    return;
  }
  // k6 empties each VU's cookie jar between iterations, so every iteration is a new visitor.
  const user = `${exec.scenario.name}-${exec.scenario.iterationInTest}`;
  const res = http.post(JOIN_URL, `{"user_id":"${user}"}`, JOIN_PARAMS);
  check(res, {
    'joined with a ticket': (r) => r.status === 200 && (r.headers['Set-Cookie'] || '').indexOf(TICKET_COOKIE) !== -1,
  });
}
