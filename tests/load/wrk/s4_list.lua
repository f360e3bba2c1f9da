-- S4: list 50 items (the first page of the seeded collection).
package.path = package.path .. ";" .. (os.getenv("BENCH_LUA_DIR") or ".") .. "/?.lua"
local c = require("common")
local headers = c.headers()

function request()
  return wrk.format("GET", "/v1/collections/bench/items?pageSize=50", headers)
end

done = c.done
