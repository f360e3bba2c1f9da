-- S2: create an item of about 400 bytes in the one owner's collection.
package.path = package.path .. ";" .. (os.getenv("BENCH_LUA_DIR") or ".") .. "/?.lua"
local c = require("common")
local headers = c.headers({["Content-Type"] = "application/json"})
local body = '{"data":{"title":"A note written under load","done":false,"priority":3,' ..
  '"tags":["bench","load","portico"],"body":"' .. string.rep("lorem ipsum ", 25) .. '"}}'

function request()
  return wrk.format("POST", "/v1/collections/created/items", headers, body)
end

done = c.done
