-- Shared helpers for the wrk scenarios (loaded with dofile by each scenario script).
--
-- Environment, set by benchmarks/run.py:
--   BENCH_TOKENS  file with one bearer token per line (real tokens from POST /api/user/login)
--   BENCH_SALT    two digits, different for every wrk run, so withdrawal order numbers
--                 never repeat across runs against the same database
--
-- Every thread starts at a different place in the token list and walks it round-robin,
-- so the 64 connections spread their requests over all the sampled users.

local M = {}

function M.read_tokens()
  local path = os.getenv("BENCH_TOKENS")
  if path == nil then
    error("BENCH_TOKENS is not set")
  end
  local tokens = {}
  for line in io.lines(path) do
    if #line > 0 then
      tokens[#tokens + 1] = line
    end
  end
  if #tokens == 0 then
    error("no tokens in " .. path)
  end
  return tokens
end

-- Runs in the main Lua state, once per thread, before the threads start.
local next_thread_id = 0
function M.setup(thread)
  thread:set("thread_id", next_thread_id)
  next_thread_id = next_thread_id + 1
end

-- A starting offset per thread that is far from the other threads' offsets.
function M.start_index(n)
  return ((thread_id or 0) * 7919) % n
end

-- The Luhn check digit for a string of digits (the digit to append to make it valid).
function M.luhn_check_digit(payload)
  local sum = 0
  local double = true -- the rightmost payload digit is doubled once the check digit is appended
  for pos = #payload, 1, -1 do
    local d = string.byte(payload, pos) - 48
    if double then
      d = d * 2
      if d > 9 then
        d = d - 9
      end
    end
    sum = sum + d
    double = not double
  end
  return (10 - sum % 10) % 10
end

-- A GET scenario on `path`: the requests are formatted once per token, then cycled.
function M.get_scenario(path)
  local requests, n, i
  local function init(_args)
    requests = {}
    for k, token in ipairs(M.read_tokens()) do
      requests[k] = wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
    end
    n = #requests
    i = M.start_index(n)
  end
  local function request()
    i = i % n + 1
    return requests[i]
  end
  return init, request
end

-- Printed once, by the main Lua state, after the run: one JSON line that run.py parses.
-- errors.status counts responses with a status >= 400 (what wrk calls "Non-2xx or 3xx").
function M.done(summary, latency, _requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,'
      .. '"errors":{"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f},'
      .. '"latency_us":{"p50":%.0f,"p90":%.0f,"p99":%.0f,"max":%.0f,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean
  ))
end

return M
