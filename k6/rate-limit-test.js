// k6 rate-limit test, for a gateway running k6/configs/rate-limit.yaml (global 50 req/s, burst 50).
// "below": 20 req/s must never see 429; "above": 200 req/s must see 429s, each with Retry-After.
// BASE_URL (default http://127.0.0.1:8081); K6_SHORT=1 for short runs (CI).
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8081';
const SHORT = __ENV.K6_SHORT === '1';
const below429 = new Counter('below_limit_429');
const above429 = new Counter('above_limit_429');
const above429NoRetryAfter = new Counter('above_limit_429_without_retry_after');

export const options = {
  scenarios: {
    below: {
      executor: 'constant-arrival-rate', exec: 'below', rate: 20, timeUnit: '1s',
      duration: SHORT ? '4s' : '30s', preAllocatedVUs: 5,
    },
    above: {
      executor: 'constant-arrival-rate', exec: 'above', rate: 200, timeUnit: '1s',
      duration: SHORT ? '4s' : '30s', preAllocatedVUs: 20,
      startTime: SHORT ? '6s' : '35s', // after "below", once the bucket has refilled
    },
  },
  thresholds: {
    below_limit_429: ['count==0'],
    above_limit_429: ['count>0'],
    above_limit_429_without_retry_after: ['count==0'],
    checks: ['rate==1'],
  },
};

export function below() {
  const res = http.get(`${BASE_URL}/hello`);
  if (res.status === 429) below429.add(1);
  check(res, { 'below the limit: 200': (r) => r.status === 200 });
}

export function above() {
  const res = http.get(`${BASE_URL}/hello`);
  if (res.status === 429) {
    above429.add(1);
    if (!res.headers['Retry-After']) above429NoRetryAfter.add(1);
  }
  check(res, { 'above the limit: 200 or 429': (r) => r.status === 200 || r.status === 429 });
}
