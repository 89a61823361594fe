-- Two-phase spending: POST /api/user/balance/holds {"order": <fresh Luhn number>, "sum": 1},
-- then POST /api/user/balance/holds/{id}/capture for the hold its answer names.
--
-- Each thread keeps the holds its connections got back (id and the owner's token) and
-- captures one whenever it has one, else places a new hold: the connections alternate,
-- so about half the requests are holds and half captures, and a pair is one checkout.
-- Order numbers are fresh (as in withdraw.lua, with "7" in front), so no hold is a
-- replay; the seeded balances are far too large for 402s.
local common = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = common.setup
done = common.done

local tokens, n, i, prefix
local counter = 0
local open = {} -- holds to capture: {id, token}
local owner = {} -- order number -> the token its hold was placed with

function init(_args)
  tokens = common.read_tokens()
  n = #tokens
  i = common.start_index(n)
  local salt = os.getenv("BENCH_SALT") or "00"
  prefix = "7" .. salt .. string.format("%02d", thread_id or 0)
end

function request()
  local hold = table.remove(open)
  if hold ~= nil then
    return wrk.format("POST", "/api/user/balance/holds/" .. hold[1] .. "/capture", {
      ["Authorization"] = "Bearer " .. hold[2],
    })
  end
  counter = counter + 1
  i = i % n + 1
  local payload = prefix .. string.format("%09d", counter)
  local number = payload .. common.luhn_check_digit(payload)
  owner[number] = tokens[i]
  return wrk.format("POST", "/api/user/balance/holds", {
    ["Authorization"] = "Bearer " .. tokens[i],
    ["Content-Type"] = "application/json",
  }, '{"order":"' .. number .. '","sum":1}')
end

function response(status, _headers, body)
  if status == 201 then
    local id = string.match(body, '"id":"(%d+)"')
    local number = string.match(body, '"order":"(%d+)"')
    local token = number and owner[number]
    if id ~= nil and token then
      owner[number] = nil
      table.insert(open, { id, token })
    end
  end
end
