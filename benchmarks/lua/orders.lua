-- GET /api/user/orders, spread over all sampled users' tokens (each has a few orders).
-- BENCH_QUERY, if set, is appended to the path (e.g. "?limit=50").
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = common.setup
init, request = common.get_scenario("/api/user/orders" .. (os.getenv("BENCH_QUERY") or ""))
done = common.done
