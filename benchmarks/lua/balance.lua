-- GET /api/user/balance, spread over all sampled users' tokens.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = common.setup
init, request = common.get_scenario("/api/user/balance")
done = common.done
