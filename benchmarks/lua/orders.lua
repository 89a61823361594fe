-- GET /api/user/orders, spread over all sampled users' tokens (each has a few orders).
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = common.setup
init, request = common.get_scenario("/api/user/orders")
done = common.done
