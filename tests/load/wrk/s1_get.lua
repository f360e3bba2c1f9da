-- S1: GET one item by id, ids drawn at random from the seeded collection.
package.path = package.path .. ";" .. (os.getenv("BENCH_LUA_DIR") or ".") .. "/?.lua"
local c = require("common")
local ids = {}
for line in io.lines(os.getenv("BENCH_IDS")) do ids[#ids + 1] = line end
local headers = c.headers()

function request()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "/v1/collections/bench/items/" .. id, headers)
end

done = c.done
