// k6 soak test: steady L7 traffic for a long time while a monitor polls the admin `/stats` and
// the Prometheus endpoint, and fails the run when the gateway does not stay flat:
//   - resident memory (process_resident_memory_bytes) grows by more than RSS_GROWTH_MIB over its
//     value after the warm-up (a leak of a few hundred bytes per request shows within minutes);
//   - active connections (/stats connections.active) exceed what the VUs can hold open (a leak
//     of connections or sessions);
//   - the gateway counts failures (/stats requests.failure grows), or its request counter stops;
//   - the usual p99 and error-rate thresholds of the traffic itself.
// BASE_URL (default http://127.0.0.1:8081), ADMIN_URL (http://127.0.0.1:9090), METRICS_URL
// (http://127.0.0.1:9091/metrics), ADMIN_TOKEN (Bearer token, when the admin API has one),
// DURATION (default 30m), RATE (requests/s, default 200), RSS_GROWTH_MIB (default 32);
// K6_SHORT=1: 40 s at the same rate, 8 MiB of allowed growth (CI).
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Trend, Counter } from 'k6/metrics';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8081';
const ADMIN_URL = __ENV.ADMIN_URL || 'http://127.0.0.1:9090';
const METRICS_URL = __ENV.METRICS_URL || 'http://127.0.0.1:9091/metrics';
const SHORT = __ENV.K6_SHORT === '1';
const DURATION = __ENV.DURATION || (SHORT ? '40s' : '30m');
const RATE = parseInt(__ENV.RATE || '200', 10);
const VUS = 20;
const RSS_GROWTH_MIB = parseFloat(__ENV.RSS_GROWTH_MIB || (SHORT ? '8' : '32'));
// Pools, buffers and allocator arenas fill during the first part of the run: the baseline is
// taken after it.
const WARMUP_FRACTION = 0.25;
const POLL_SECONDS = SHORT ? 2 : 10;

const adminParams = __ENV.ADMIN_TOKEN
  ? { headers: { Authorization: `Bearer ${__ENV.ADMIN_TOKEN}` }, tags: { name: 'admin' } }
  : { tags: { name: 'admin' } };

const rssGrowth = new Trend('rss_growth_mib');
const activeConnections = new Trend('stats_active_connections');
const newFailures = new Counter('stats_new_failures');
const stalledPolls = new Counter('stats_counter_stalled');
const monitorErrors = new Counter('monitor_errors');

function seconds(d) {
  const m = /^(\d+)(s|m|h)$/.exec(d);
  if (!m) throw new Error(`DURATION must look like 40s, 30m or 2h, not '${d}'`);
  return parseInt(m[1], 10) * { s: 1, m: 60, h: 3600 }[m[2]];
}
const TOTAL_SECONDS = seconds(DURATION);

export const options = {
  scenarios: {
    traffic: {
      executor: 'constant-arrival-rate', exec: 'traffic', rate: RATE, timeUnit: '1s',
      duration: DURATION, preAllocatedVUs: VUS, maxVUs: VUS,
    },
    monitor: {
      executor: 'constant-vus', exec: 'monitor', vus: 1, duration: DURATION,
    },
  },
  thresholds: {
    'http_req_failed{scenario:traffic}': ['rate<0.001'],
    'http_req_duration{scenario:traffic}': ['p(99)<250'],
    'checks{scenario:traffic}': ['rate>0.999'],
    rss_growth_mib: [`max<${RSS_GROWTH_MIB}`],
    // Every VU holds at most one client connection; the monitor one more.
    stats_active_connections: [`max<=${VUS + 2}`],
    stats_new_failures: ['count==0'],
    stats_counter_stalled: ['count==0'],
    monitor_errors: ['count==0'],
  },
};

export function traffic() {
  const res = http.get(`${BASE_URL}/soak`, { tags: { name: 'soak' } });
  check(res, { 'status is 200': (r) => r.status === 200 });
}

function rssBytes() {
  const res = http.get(METRICS_URL, adminParams);
  if (res.status !== 200) return null;
  const m = /^process_resident_memory_bytes ([0-9.e+]+)$/m.exec(res.body);
  return m ? parseFloat(m[1]) : null;
}

function stats() {
  const res = http.get(`${ADMIN_URL}/stats`, adminParams);
  if (res.status !== 200) return null;
  try {
    return res.json();
  } catch (e) {
    return null;
  }
}

// One VU, looping for the whole run: state below lives across its iterations.
let baselineRss = null;
let firstFailures = null;
let lastTotal = null;
const started = Date.now();

export function monitor() {
  const elapsed = (Date.now() - started) / 1000;
  const s = stats();
  const rss = rssBytes();
  if (s === null || rss === null) {
    monitorErrors.add(1);
    sleep(POLL_SECONDS);
    return;
  }
  activeConnections.add(s.connections.active);
  if (firstFailures === null) firstFailures = s.requests.failure;
  if (s.requests.failure > firstFailures) newFailures.add(s.requests.failure - firstFailures);
  firstFailures = s.requests.failure;
  if (lastTotal !== null && s.requests.total <= lastTotal && elapsed < TOTAL_SECONDS - POLL_SECONDS) {
    stalledPolls.add(1);
  }
  lastTotal = s.requests.total;
  if (elapsed >= TOTAL_SECONDS * WARMUP_FRACTION) {
    if (baselineRss === null) baselineRss = rss;
    rssGrowth.add((rss - baselineRss) / (1024 * 1024));
  }
  sleep(POLL_SECONDS);
}
