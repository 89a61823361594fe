-- POST /api/user/balance/withdraw {"order": <fresh Luhn number>, "sum": 1}.
--
-- Every request spends 1 point on a new order number: "8", the run's salt (2 digits),
-- the thread id (2 digits), a per-thread counter (9 digits), then the Luhn check digit.
-- Numbers are therefore unique across threads, runs and users, so every request is a real
-- charge (no replays, no 409s), and the seeded balances are far too large for 402s.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = common.setup
done = common.done

local tokens, n, i, prefix
local counter = 0

function init(_args)
  tokens = common.read_tokens()
  n = #tokens
  i = common.start_index(n)
  local salt = os.getenv("BENCH_SALT") or "00"
  prefix = "8" .. salt .. string.format("%02d", thread_id or 0)
end

function request()
  counter = counter + 1
  i = i % n + 1
  local payload = prefix .. string.format("%09d", counter)
  local number = payload .. common.luhn_check_digit(payload)
  return wrk.format("POST", "/api/user/balance/withdraw", {
    ["Authorization"] = "Bearer " .. tokens[i],
    ["Content-Type"] = "application/json",
  }, '{"order":"' .. number .. '","sum":1}')
end
