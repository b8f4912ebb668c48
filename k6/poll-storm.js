// A poll storm: a large waiting crowd (its tickets from scripts/fill-crowd.py) polling its status
// all at once, as fast as VUS connections let it. Every poll must answer 200 with the visitor
// still waiting and a position; thresholds fail the run.
//
//   scripts/fill-crowd.py http://127.0.0.1:8080 storm 100000 /tmp/tickets.json
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e ROOM=storm -e TICKETS=/tmp/tickets.json k6/poll-storm.js
//
// Parameters (environment variables via -e):
//   BASE_URL      the server (origin or edge)                              [http://127.0.0.1:8080]
//   ROOM          the room the crowd waits in (paused, so nobody moves)    [storm]
//   TICKETS       the crowd's tickets, a JSON array (an absolute path)    (required)
//   VUS           polling connections                                      [64]
//   DURATION_S    how long                                                  [30]
//   P95_MS, P99_MS   latency thresholds                                    [50, 100]
//   MIN_SUCCESS   the share of polls that must succeed                     [1.0]
//
// Each VU polls the tickets in its own stride (VU n takes tickets n, n + VUS, ...), so the
// whole crowd is polled, front to back, over and over.
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { SharedArray } from 'k6/data';

const env = (name, fallback) => (__ENV[name] === undefined || __ENV[name] === '' ? fallback : __ENV[name]);
const BASE_URL = env('BASE_URL', 'http://127.0.0.1:8080').replace(/\/$/, '');
const ROOM = env('ROOM', 'storm');
const VUS = parseInt(env('VUS', '64'), 10);
const DURATION_S = parseInt(env('DURATION_S', '30'), 10);
const P95_MS = parseFloat(env('P95_MS', '50'));
const P99_MS = parseFloat(env('P99_MS', '100'));
const MIN_SUCCESS = parseFloat(env('MIN_SUCCESS', '1.0'));

const tickets = new SharedArray('tickets', () => JSON.parse(open(env('TICKETS', ''))));

export const options = {
  scenarios: {
    storm: { executor: 'constant-vus', vus: VUS, duration: `${DURATION_S}s` },
  },
  systemTags: ['status', 'method', 'name', 'scenario', 'expected_response'],
  thresholds: {
    checks: [`rate>=${MIN_SUCCESS}`],
    http_req_duration: [`p(95)<${P95_MS}`, `p(99)<${P99_MS}`],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

const STATUS_URL = `${BASE_URL}/_qg/v1/rooms/${ROOM}/status`;

export default function () {
  const vu = exec.vu.idInTest - 1;
  const i = (vu + exec.vu.iterationInScenario * VUS) % tickets.length;
  const res = http.get(STATUS_URL, {
    headers: { Authorization: `Bearer ${tickets[i]}` },
    tags: { name: 'poll' },
  });
  check(res, {
    'a waiting visitor learns its position': (r) => {
      if (r.status !== 200) {
        return false;
      }
      const body = r.json();
      return body.status === 'waiting' && body.position >= 1;
    },
  });
}
