// k6 circuit-breaker test, for a gateway running k6/configs/circuit-breaker.yaml: three
// backends, one of them down, health checks off and no retries, so only the breaker can take
// the dead backend out of rotation.
//   trip:   one client, sequential requests: the dead backend's share fails (502) until its
//           breaker opens after failureThreshold (3) consecutive failures;
//   routed: then steady traffic from many clients: no request fails, every answer comes from a
//           live backend (X-Demo-Backend demo-1 or demo-2);
//   verify: the admin API shows the dead backend's breaker open and the live ones closed.
// BASE_URL (default http://127.0.0.1:8081), ADMIN_URL (http://127.0.0.1:9090), ADMIN_TOKEN,
// DEAD_BACKEND (default 127.0.0.1:9003); K6_SHORT=1 for a short run (CI).
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8081';
const ADMIN_URL = __ENV.ADMIN_URL || 'http://127.0.0.1:9090';
const DEAD = __ENV.DEAD_BACKEND || '127.0.0.1:9003';
const SHORT = __ENV.K6_SHORT === '1';
const ROUTED = SHORT ? '8s' : '2m';
const FAILURE_THRESHOLD = 3;

const tripFailures = new Counter('trip_failures');
const breakerWrong = new Counter('breaker_state_wrong');

export const options = {
  scenarios: {
    trip: { executor: 'shared-iterations', exec: 'trip', vus: 1, iterations: 30, maxDuration: '10s' },
    routed: {
      executor: 'constant-arrival-rate', exec: 'routed', rate: 100, timeUnit: '1s',
      duration: ROUTED, preAllocatedVUs: 10, startTime: '3s',
    },
    verify: {
      executor: 'shared-iterations', exec: 'verify', vus: 1, iterations: 1,
      startTime: SHORT ? '12s' : '2m5s',
    },
  },
  thresholds: {
    // The dead backend was really in rotation, and the breaker opened soon after the threshold
    // (the trip report reaches the breaker actor asynchronously: allow a few in flight).
    trip_failures: [`count>=${FAILURE_THRESHOLD}`, `count<=${FAILURE_THRESHOLD + 3}`],
    'http_req_failed{scenario:routed}': ['rate==0'],
    'checks{scenario:routed}': ['rate==1'],
    breaker_state_wrong: ['count==0'],
    'checks{scenario:verify}': ['rate==1'],
  },
};

const adminParams = __ENV.ADMIN_TOKEN
  ? { headers: { Authorization: `Bearer ${__ENV.ADMIN_TOKEN}` } }
  : {};

export function trip() {
  const res = http.get(`${BASE_URL}/cb`, { responseCallback: http.expectedStatuses(200, 502) });
  if (res.status === 502) tripFailures.add(1);
}

export function routed() {
  const res = http.get(`${BASE_URL}/cb`);
  const from = res.headers['X-Demo-Backend'];
  check(res, {
    'status is 200': (r) => r.status === 200,
    'served by a live backend': () => from === 'demo-1' || from === 'demo-2',
  });
}

export function verify() {
  const res = http.get(`${ADMIN_URL}/backends`, adminParams);
  let backends = [];
  try {
    backends = res.json();
  } catch (e) {
    backends = [];
  }
  const dead = backends.filter((b) => b.addr === DEAD);
  const live = backends.filter((b) => b.addr !== DEAD);
  const ok = check(res, {
    'admin /backends 200': (r) => r.status === 200,
    'dead backend listed': () => dead.length === 1,
    'dead backend breaker open': () => dead.length === 1 && dead[0].circuit_breaker === 'open',
    'live backends breaker closed': () =>
      live.length === 2 && live.every((b) => b.circuit_breaker === 'closed'),
  });
  if (!ok) breakerWrong.add(1);
}
