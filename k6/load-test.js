// k6 load test for the gogate L7 listener.
// SCENARIO=steady|ramp|spike (default steady); BASE_URL (default http://127.0.0.1:8081);
// K6_SHORT=1 shrinks every stage to a few seconds (CI).
import http from 'k6/http';
import { check } from 'k6';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8081';
const SCENARIO = __ENV.SCENARIO || 'steady';
const SHORT = __ENV.K6_SHORT === '1';
const d = (long, short) => (SHORT ? short : long);

const scenarios = {
  steady: { executor: 'constant-vus', vus: 10, duration: d('2m', '5s') },
  ramp: {
    executor: 'ramping-vus', startVUs: 0,
    stages: [
      { duration: d('1m', '3s'), target: 20 },
      { duration: d('2m', '3s'), target: 20 },
      { duration: d('30s', '2s'), target: 0 },
    ],
  },
  spike: {
    executor: 'ramping-vus', startVUs: 2,
    stages: [
      { duration: d('30s', '2s'), target: 2 },
      { duration: d('5s', '1s'), target: 50 },
      { duration: d('30s', '2s'), target: 50 },
      { duration: d('5s', '1s'), target: 2 },
      { duration: d('30s', '2s'), target: 2 },
    ],
  },
};

if (!scenarios[SCENARIO]) {
  throw new Error(`unknown SCENARIO '${SCENARIO}' (steady, ramp, spike)`);
}

export const options = {
  scenarios: { [SCENARIO]: scenarios[SCENARIO] },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    http_req_duration: ['p(99)<250'],
    checks: ['rate>0.99'],
  },
};

export default function () {
  const res = http.get(`${BASE_URL}/hello`);
  check(res, { 'status is 200': (r) => r.status === 200 });
}
