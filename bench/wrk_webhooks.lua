-- wrk script for bench/webhooks.py: each wrk thread sends its own slice of the pre-signed
-- requests exactly once, then stops; 2xx answers are counted per thread.
local threads = {}
local counter = 0

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
      table.insert(reqs, {sig, body})
    end
    n = n + 1
  end
  i = 0
  answered = 0
  ok = 0
  bad = 0
end

request = function()
  -- Past the end of the slice: cheap health checks (not counted) until the benchmark,
  -- seeing every event stored, interrupts wrk (SIGINT makes wrk print its summary).
  i = i + 1
  local r = reqs[i]
  if r == nil then
    return wrk.format("GET", "/health")
  end
  return wrk.format("POST", path, {["Stripe-Signature"] = r[1], ["Content-Type"] = "application/json"}, r[2])
end

response = function(status, headers, body)
  -- Health checks answer {"status": "ok", ...}; webhook answers carry "received".
  if body:find('"received"', 1, true) then
    if status >= 200 and status < 300 then ok = ok + 1 else bad = bad + 1 end
  elseif not body:find('"status"', 1, true) then
    bad = bad + 1
  end
end

done = function(summary, latency, requests)
  local total_ok, total_bad = 0, 0
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_bad = total_bad + t:get("bad")
  end
  io.write(string.format("RESULT ok=%d bad=%d p50_us=%d p99_us=%d max_us=%d seconds=%f\n",
    total_ok, total_bad, latency:percentile(50), latency:percentile(99), latency.max,
    summary.duration / 1e6))
end
