-- S3: GET /v1/users/me.
package.path = package.path .. ";" .. (os.getenv("BENCH_LUA_DIR") or ".") .. "/?.lua"
local c = require("common")
local headers = c.headers()

function request()
  return wrk.format("GET", "/v1/users/me", headers)
end

done = c.done
