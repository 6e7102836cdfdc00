"""A plain MCP client on Python's http.client: one keep-alive connection, default delayed
ACKs, no tricks. Prints the median and worst time of N identical read calls per protocol era
as JSON: {"2026-07-28": {"median_ms": ..., "max_ms": ...}, "initialize": {...}}.

Usage: python3 plain_http.py URL TOKEN TOOL ARGUMENTS_JSON [N]
"""

import http.client
import json
import statistics
import sys
import time
import urllib.parse


def post(conn, path, headers, body):
    conn.request("POST", path, body=json.dumps(body), headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        raise SystemExit(f"HTTP {response.status}: {data[:300]!r}")
    return response, data


def timed(conn, path, headers, body, n):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        _, data = post(conn, path, headers, body)
        times.append((time.perf_counter() - start) * 1000)
        if b'"result"' not in data:
            raise SystemExit(f"no result: {data[:300]!r}")
    return {"median_ms": statistics.median(times), "max_ms": max(times)}


def main():
    url, token, tool, arguments = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 15
    parts = urllib.parse.urlsplit(url)
    base = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    out = {}

    # 2026-07-28: stateless, every request carries its protocol version and method.
    conn = http.client.HTTPConnection(parts.hostname, parts.port)
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    headers = dict(base, **{
        "Mcp-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": tool,
    })
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments, "_meta": meta}}
    out["2026-07-28"] = timed(conn, parts.path, headers, call, n)
    conn.close()

    # The initialize era: a session, then calls on it.
    conn = http.client.HTTPConnection(parts.hostname, parts.port)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "plain-http", "version": "0"}}}
    response, _ = post(conn, parts.path, base, init)
    session = response.getheader("mcp-session-id")
    headers = dict(base, **{"Mcp-Session-Id": session, "Mcp-Protocol-Version": "2025-11-25"})
    post(conn, parts.path, headers, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}}
    out["initialize"] = timed(conn, parts.path, headers, call, n)
    conn.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
