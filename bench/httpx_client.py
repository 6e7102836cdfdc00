"""Benchmark client: a plain httpx MCP client over streamable HTTP, as any small client would
write it (no MCP SDK). It calls one tool N times, sequentially or from C concurrent clients
(each its own httpx client with one keep-alive connection), and prints one JSON object:
p50, p99, max, calls/s, and how many calls took 35 ms or more (delayed-ACK stalls show up
as ~40 ms).

Two protocol eras:
  initialize  the session era: `initialize` (asking for --protocol-version, keeping whatever
              the server negotiates), `notifications/initialized`, then calls carrying
              Mcp-Session-Id (if the server issued one) and Mcp-Protocol-Version.
  2026        the stateless 2026-07-28 era: no handshake; every request carries
              `_meta` (protocol version, client capabilities, client info) and the
              Mcp-Protocol-Version / Mcp-Method / Mcp-Name headers.

Usage:
  python httpx_client.py --url URL [--token T] --tool NAME [--arguments JSON]
      [--era initialize|2026] [--calls N] [--concurrency C] [--warmup W]
"""

import argparse
import asyncio
import json
import sys
import time

import httpx

ERA_2026 = "2026-07-28"
CLIENT_INFO = {"name": "portcullis-bench-httpx", "version": "1"}


def parse_reply(response: httpx.Response, want_id):
    """The JSON-RPC reply with id `want_id` from a JSON or an SSE (text/event-stream) body."""
    ctype = response.headers.get("content-type", "")
    if ctype.startswith("text/event-stream"):
        for block in response.text.split("\n\n"):
            data = "\n".join(
                line[5:].lstrip() for line in block.splitlines() if line.startswith("data:")
            )
            if not data:
                continue
            message = json.loads(data)
            if isinstance(message, dict) and message.get("id") == want_id:
                return message
        raise RuntimeError(f"no reply with id {want_id} in SSE body: {response.text[:300]!r}")
    return response.json()


class Session:
    """One client: its own httpx.AsyncClient (one keep-alive connection), one era."""

    def __init__(self, args):
        self.args = args
        self.url = args.url
        self.client = httpx.AsyncClient(
            timeout=60.0,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        self.base = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        }
        if args.token:
            self.base["Authorization"] = f"Bearer {args.token}"
        self.headers = dict(self.base)
        self.next_id = 1
        self.negotiated = None

    async def post(self, headers, body):
        response = await self.client.post(self.url, headers=headers, content=json.dumps(body))
        if response.status_code >= 300:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]!r}")
        return response

    async def open(self):
        if self.args.era == "2026":
            self.negotiated = ERA_2026
            self.headers = dict(
                self.base,
                **{
                    "Mcp-Protocol-Version": ERA_2026,
                    "Mcp-Method": "tools/call",
                    "Mcp-Name": self.args.tool,
                },
            )
            return
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": self.args.protocol_version,
                "capabilities": {},
                "clientInfo": CLIENT_INFO,
            },
        }
        response = await self.post(self.base, init)
        reply = parse_reply(response, 0)
        if "result" not in reply:
            raise RuntimeError(f"initialize failed: {reply}")
        self.negotiated = reply["result"]["protocolVersion"]
        self.headers = dict(self.base, **{"Mcp-Protocol-Version": self.negotiated})
        session = response.headers.get("mcp-session-id")
        if session:
            self.headers["Mcp-Session-Id"] = session
        await self.post(self.headers, {"jsonrpc": "2.0", "method": "notifications/initialized"})

    def call_body(self):
        self.next_id += 1
        params = {"name": self.args.tool, "arguments": self.args.arguments}
        if self.args.era == "2026":
            params["_meta"] = {
                "io.modelcontextprotocol/protocolVersion": ERA_2026,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
            }
        return {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call", "params": params}

    async def call(self):
        """One timed tools/call; raises unless the tool ran without error."""
        body = self.call_body()
        started = time.perf_counter()
        response = await self.post(self.headers, body)
        reply = parse_reply(response, body["id"])
        elapsed = time.perf_counter() - started
        result = reply.get("result")
        if result is None or result.get("isError"):
            raise RuntimeError(f"call failed: {json.dumps(reply)[:300]}")
        return elapsed

    async def close(self):
        if self.args.era == "initialize" and "Mcp-Session-Id" in self.headers:
            try:
                await self.client.delete(self.url, headers=self.headers)
            except httpx.HTTPError:
                pass
        await self.client.aclose()


def percentile(sorted_samples, q):
    return sorted_samples[round((len(sorted_samples) - 1) * q)]


async def run(args):
    sessions = [Session(args) for _ in range(args.concurrency)]
    for s in sessions:
        await s.open()
    per = max(1, args.calls // args.concurrency)
    warm = max(0, args.warmup // args.concurrency)

    async def worker(s, n):
        out = []
        for _ in range(n):
            out.append(await s.call())
        return out

    await asyncio.gather(*(worker(s, warm) for s in sessions))
    started = time.perf_counter()
    results = await asyncio.gather(*(worker(s, per) for s in sessions))
    wall = time.perf_counter() - started
    for s in sessions:
        await s.close()
    samples = sorted(t * 1e3 for r in results for t in r)
    return {
        "client": "httpx",
        "era": args.era,
        "negotiated": sessions[0].negotiated,
        "concurrency": args.concurrency,
        "calls": len(samples),
        "p50_ms": round(percentile(samples, 0.50), 3),
        "p99_ms": round(percentile(samples, 0.99), 3),
        "max_ms": round(samples[-1], 3),
        "calls_per_s": round(len(samples) / wall, 1),
        "stalls_ge_35ms": sum(1 for t in samples if t >= 35.0),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--token", default="")
    p.add_argument("--tool", required=True)
    p.add_argument("--arguments", default='{"id": "c_1"}', type=json.loads)
    p.add_argument("--era", choices=["initialize", "2026"], default="initialize")
    p.add_argument("--protocol-version", default="2025-06-18",
                   help="version asked for in `initialize` (the server may answer another)")
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--warmup", type=int, default=100)
    args = p.parse_args()
    try:
        print(json.dumps(asyncio.run(run(args))))
    except Exception as exc:  # one line for the caller's log, non-zero exit
        print(json.dumps({"client": "httpx", "era": args.era, "error": str(exc)[:500]}))
        sys.exit(1)


if __name__ == "__main__":
    main()
