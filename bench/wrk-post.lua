-- wrk script for bench/envoy_rps.py: POST one MCP tools/call body, as a client does
-- after initialize, and print a machine-readable summary line at the end.
--
--   PQGUARD_BENCH_BODY=body.json wrk -t1 -c16 -d10s -s bench/wrk-post.lua http://127.0.0.1:PORT/mcp
--
-- The body is read once from the file named by PQGUARD_BENCH_BODY (envoy_rps.py
-- writes it with `parse-throughput --emit-body`). The request is built once;
-- wrk then sends the same bytes on every connection.

local path = os.getenv("PQGUARD_BENCH_BODY")
if not path then
  io.stderr:write("wrk-post.lua: set PQGUARD_BENCH_BODY to the file holding the request body\n")
  os.exit(2)
end
local file, err = io.open(path, "rb")
if not file then
  io.stderr:write("wrk-post.lua: cannot open " .. path .. ": " .. tostring(err) .. "\n")
  os.exit(2)
end
local body = file:read("*a")
file:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2025-11-25"
-- PQGUARD_BENCH_HEADER="Name: value" adds one header (for example a bearer token).
local extra = os.getenv("PQGUARD_BENCH_HEADER")
if extra then
  local name, value = extra:match("^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end

-- One line, prefixed so envoy_rps.py can find it among wrk's own output.
-- Latencies are in microseconds. errors.status counts responses with status >= 400.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'PQGUARD_WRK {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"stdev":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
