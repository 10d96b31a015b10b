-- wrk script for bench/webhooks.py: each wrk thread sends its own slice of the pre-signed
-- requests exactly once, then stops. Nothing else is ever sent, so wrk's latency histogram
-- holds webhook deliveries only; the rate is taken from this script's own clock (first
-- request written to last answer), not from wrk's run time, which lasts until it is
-- interrupted.
--
-- Latency is this script's own, per request: the time request() handed an event to wrk to
-- the time response() got the answer naming that event (the receiver answers with its
-- event_id), each thread writing its list to LATENCY_FILE.<thread id> before it stops. wrk's
-- own histogram is not used: wrk 4.1 "corrects" it for coordinated omission (stats_correct
-- adds synthetic samples for every answer slower than connections/rate), so its p99 is not a
-- per-request figure and was 2-3x autocannon's on the same server.
--
-- Three traps of wrk 4.1 this avoids (the third is the histogram above):
--  * wrk calls request() once on thread 0 before the run, only to count pipelined requests
--    (script_verify_request); that call must not take an event, or the event is never sent.
--    Thread 0 starts one index early, and that first call gets a request nobody sends.
--  * request() has no "no more requests" answer. delay() is called before each request(),
--    one to one, so it reserves the next event and, when the slice is used up, holds the
--    connection until the thread is stopped.
--
-- Paced (third argument: this thread's events per second, 0 = as fast as answers come):
-- delay() holds each event until its slot on the thread's schedule (start + k / rate), so
-- the offered rate is fixed whatever the server answers, and the latencies compare across
-- senders (wrk times a request from when it is written, after the delay).
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

local threads = {}
local counter = 0
local HOLD_MS = 3600 * 1000
local PROGRESS_EVERY = 250

setup = function(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

init = function(args)
  local file, nthreads = args[1], tonumber(args[2])
  reqs = {}
  local n = 0
  for line in io.lines(file) do
    if n % nthreads == id then
      local sig, body = line:match("([^\t]+)\t(.*)")
      table.insert(reqs, {sig, body, body:match('"id"%s*:%s*"([^"]+)"')})
    end
    n = n + 1
  end
  total = #reqs
  -- Thread 0's first request() is wrk's verification call (see the top of this file).
  i = (id == 0) and -1 or 0
  reserved = 0
  local rate = tonumber(args[3]) or 0
  interval_us = (rate > 0) and (1000000 / rate) or 0
  start_us = 0
  answered = 0
  ok = 0
  bad = 0
  first_us = 0
  last_us = 0
  latency_file = args[4]
  started = {}
  latencies = {}
end

delay = function()
  if reserved >= total then
    return HOLD_MS
  end
  reserved = reserved + 1
  if interval_us == 0 then
    return 0
  end
  local now = now_us()
  if start_us == 0 then
    start_us = now
  end
  local due = start_us + (reserved - 1) * interval_us
  if due <= now then
    return 0
  end
  return math.floor((due - now) / 1000 + 0.5)  -- wrk's timers count milliseconds
end

request = function()
  i = i + 1
  local r = reqs[i]
  if r == nil then
    -- Only wrk's verification call (i == 0 on thread 0) gets here; it is never sent.
    return wrk.format("GET", "/health")
  end
  local now = now_us()
  if first_us == 0 then
    first_us = now
  end
  started[r[3]] = now
  return wrk.format("POST", path, {["Stripe-Signature"] = r[1], ["Content-Type"] = "application/json"}, r[2])
end

response = function(status, headers, body)
  answered = answered + 1
  local now = now_us()
  if answered % PROGRESS_EVERY == 0 then
    -- The harness's sign of life: it watches these lines, not the server, for a stall.
    io.write(string.format("PROGRESS id=%d answered=%d\n", id, answered))
    io.stdout:flush()
  end
  last_us = now
  local event = (status >= 200 and status < 300) and body:match('"event_id"%s*:%s*"([^"]+)"')
  if event and started[event] then
    ok = ok + 1
    latencies[#latencies + 1] = now - started[event]
    started[event] = nil
  else
    bad = bad + 1
  end
  if answered >= total then
    local out = io.open(latency_file .. "." .. id, "w")
    out:write(table.concat(latencies, "\n"), "\n")
    out:close()
    io.write(string.format("THREAD_DONE id=%d\n", id))
    io.stdout:flush()
    wrk.thread:stop()
  end
end

done = function(summary, latency, requests)
  local total_ok, total_bad, sent = 0, 0, 0
  local first, last = nil, nil
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_bad = total_bad + t:get("bad")
    sent = sent + t:get("total")
    local f, l = t:get("first_us"), t:get("last_us")
    if f > 0 and (first == nil or f < first) then first = f end
    if l > 0 and (last == nil or l > last) then last = l end
  end
  local span = (first and last) and (last - first) or 0
  io.write(string.format(
    "RESULT events=%d ok=%d bad=%d span_us=%d n=%d errors=%d\n",
    sent, total_ok, total_bad, span, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
