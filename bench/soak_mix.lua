-- wrk script for bench/soak.sh: a paced mix of GET and POST requests.
--   wrk -t1 -cC -dD --timeout 5s -s bench/soak_mix.lua URL -- DELAY_MS [close]
-- DELAY_MS: mean think time before each request on a connection (uniform 0.5x..1.5x), so the
--           offered rate is about C * 1000 / DELAY_MS req/s (less the service time).
-- close:    every request carries "Connection: close" (a new connection per request).
-- Mix: 65% GET /api/items/N (the split route), 15% GET /pages/N (default upstream),
--      20% POST /api/orders with a 64..512-byte JSON body. No HEAD: wrk's parser does not know
--      the request was HEAD and waits for the Content-Length body that never comes (the
--      connection stalls until the server's keep-alive timeout, then counts a read error).
-- done() prints one line "SOAK {json}" with counts by status class and latency
-- percentiles (microseconds), summed over threads.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  delay_ms = tonumber(args[1]) or 0
  close = (args[2] == "close")
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  c2xx, c3xx, c4xx, c502, c503, c504, c5xx = 0, 0, 0, 0, 0, 0, 0
  local pad = string.rep("x", 512)
  bodies = {}
  for i = 1, 8 do
    local n = 64 * i
    local head = '{"order":' .. i .. ',"pad":"'
    bodies[i] = head .. string.sub(pad, 1, n - #head - 2) .. '"}'
  end
end

local function hdrs(extra)
  local h = {}
  if close then h["Connection"] = "close" end
  if extra then for k, v in pairs(extra) do h[k] = v end end
  return h
end

function request()
  local r = math.random(100)
  local n = math.random(1000)
  if r <= 65 then
    return wrk.format("GET", "/api/items/" .. n, hdrs())
  elseif r <= 80 then
    return wrk.format("GET", "/pages/" .. n, hdrs())
  else
    local b = bodies[math.random(8)]
    return wrk.format("POST", "/api/orders", hdrs({["Content-Type"] = "application/json"}), b)
  end
end

function delay()
  if delay_ms <= 0 then return 0 end
  return math.floor(delay_ms * (0.5 + math.random()))
end

function response(status, headers, body)
  if status < 300 then c2xx = c2xx + 1
  elseif status < 400 then c3xx = c3xx + 1
  elseif status < 500 then c4xx = c4xx + 1
  elseif status == 502 then c502 = c502 + 1
  elseif status == 503 then c503 = c503 + 1
  elseif status == 504 then c504 = c504 + 1
  else c5xx = c5xx + 1 end
end

function done(summary, latency, requests)
  local s = { c2xx = 0, c3xx = 0, c4xx = 0, c502 = 0, c503 = 0, c504 = 0, c5xx = 0 }
  for _, t in ipairs(threads) do
    for k, _ in pairs(s) do s[k] = s[k] + (tonumber(t:get(k)) or 0) end
  end
  local e = summary.errors
  local out = string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"c2xx":%d,"c3xx":%d,"c4xx":%d,"c502":%d,"c503":%d,"c504":%d,"c5xx":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    s.c2xx, s.c3xx, s.c4xx, s.c502, s.c503, s.c504, s.c5xx,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean)
  io.write("SOAK " .. out .. "\n")
end
