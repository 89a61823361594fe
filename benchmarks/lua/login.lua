-- POST /api/user/login {"login": <seeded user>, "password": BENCH_PASSWORD}, correct passwords.
--
-- Walks the logins in BENCH_LOGINS round-robin from a per-thread offset. Each request costs
-- the service one argon2id verification. The service throttles 5 failed logins per login,
-- not successful ones, so this measures the hash, not the throttle.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = common.setup
done = common.done

local requests, n, i

function init(_args)
  local path = os.getenv("BENCH_LOGINS") or error("BENCH_LOGINS is not set")
  local password = os.getenv("BENCH_PASSWORD") or error("BENCH_PASSWORD is not set")
  requests = {}
  for login in io.lines(path) do
    if #login > 0 then
      requests[#requests + 1] = wrk.format("POST", "/api/user/login",
        { ["Content-Type"] = "application/json" },
        '{"login":"' .. login .. '","password":"' .. password .. '"}')
    end
  end
  n = #requests
  if n == 0 then
    error("no logins in " .. path)
  end
  i = common.start_index(n)
end

function request()
  i = i % n + 1
  return requests[i]
end
