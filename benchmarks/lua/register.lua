-- POST /api/user/register {"login": <new login>, "password": BENCH_PASSWORD}.
--
-- Every request registers a new user: "reg-", the run's salt, the thread id and a
-- per-thread counter, so logins never repeat (no 409s) and each request costs the service
-- one argon2id hash and one INSERT, as a real sign-up does.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = common.setup
done = common.done

local prefix, password
local counter = 0

function init(_args)
  local salt = os.getenv("BENCH_SALT") or "00"
  prefix = "reg-" .. salt .. "-" .. (thread_id or 0) .. "-"
  password = os.getenv("BENCH_PASSWORD") or error("BENCH_PASSWORD is not set")
end

function request()
  counter = counter + 1
  return wrk.format("POST", "/api/user/register", { ["Content-Type"] = "application/json" },
    '{"login":"' .. prefix .. counter .. '","password":"' .. password .. '"}')
end
