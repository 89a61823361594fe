-- GET /api/user/history?limit=<BENCH_HISTORY_LIMIT, 50>: the first page of the history,
-- for the tokens given (the runner gives the one user it seeded with 10,000 entries).
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = common.setup
local limit = os.getenv("BENCH_HISTORY_LIMIT") or "50"
init, request = common.get_scenario("/api/user/history?limit=" .. limit)
done = common.done
