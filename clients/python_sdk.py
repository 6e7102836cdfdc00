"""Independent-client check: resources and prompts through Portcullis with the
official Python MCP SDK (``mcp==2.3.0`` from PyPI), in both protocol eras.

What it checks, once per era:

* ``2025-11-25`` -- the ``initialize`` handshake with a session
  (``mcp.Client(..., mode="legacy")``; the gateway must issue an
  ``Mcp-Session-Id``).
* ``2026-07-28`` -- the stateless revision: ``mcp.Client(..., mode="auto")``
  probes ``server/discover`` and must adopt 2026-07-28 (a silent fallback to
  ``initialize`` is a failure), and the gateway must issue no session.

With the agent token (``--token``):
  resources/list contains ``portcullis://crm/crm://contacts/c_1``; resources/read
  of it returns text JSON whose ``name`` is ``Ada Lovelace`` and whose content
  ``uri`` is that same URI; resources/templates/list contains
  ``portcullis://crm/crm://contacts/{id}``; prompts/list contains
  ``crm__follow_up``; prompts/get ``crm__follow_up {customer_id: c_1}`` returns a
  message mentioning ``Ada Lovelace``.

With the hidden token (``--hidden-token``; an agent granted only the tool
``get_contact``): resources/list is empty; resources/read of the URI fails with
an MCP error whose message starts with "resource not found" (never a
"forbidden", which would reveal that the resource exists); prompts/list is
empty.

Prints one line per check (``ok  <era> <check>`` or ``FAIL <era> <check>:
<detail>``); exits 0 when every check passes, 1 otherwise. Every operation has
a 20 s timeout.

Run it (the venv comes from ``clients/setup.sh``, which prints its python):

    PY=$(bash clients/setup.sh | tail -n1)
    $PY clients/python_sdk.py --url http://127.0.0.1:PORT/t/demo/mcp \\
        --token pca_AGENT --hidden-token pca_HIDDEN [--era 2025-11-25|2026-07-28|both]

``--url`` is the tenant's MCP endpoint as printed by ``portcullis serve --demo``
("MCP endpoint: ...").
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

OP_TIMEOUT = 20.0

RESOURCE_URI = "portcullis://crm/crm://contacts/c_1"
TEMPLATE_URI = "portcullis://crm/crm://contacts/{id}"
PROMPT_NAME = "crm__follow_up"
CONTACT_NAME = "Ada Lovelace"

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
# How mcp 2.3.0 picks the era: `Client(mode=...)`. "legacy" always runs the
# initialize handshake (offering LATEST_HANDSHAKE_VERSION = 2025-11-25); "auto"
# sends `server/discover` at LATEST_MODERN_VERSION = 2026-07-28 and adopts it,
# falling back to initialize only on an error/legacy answer; a version string
# such as "2026-07-28" adopts that version without any probe.
CLIENT_MODE = {LEGACY: "legacy", MODERN: "auto"}

PAGE_CAP = 50


class CheckFailed(Exception):
    pass


class Wire:
    """Records what went over HTTP, so the era can be verified from the wire."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self.protocol_headers: set[str] = set()
        self.session_ids: set[str] = set()

    async def on_request(self, request: httpx2.Request) -> None:
        version = request.headers.get("mcp-protocol-version")
        if version:
            self.protocol_headers.add(version)
        if request.method != "POST":
            return
        try:
            body = json.loads(request.content)
        except Exception:  # streamed or non-JSON body: nothing to record
            return
        for message in body if isinstance(body, list) else [body]:
            if isinstance(message, dict) and isinstance(message.get("method"), str):
                self.methods.append(message["method"])

    async def on_response(self, response: httpx2.Response) -> None:
        session_id = response.headers.get("mcp-session-id")
        if session_id:
            self.session_ids.add(session_id)


def _describe(e: BaseException) -> str:
    """One line for an unexpected error, with exception groups flattened to their leaves."""
    inner = getattr(e, "exceptions", None)
    if isinstance(inner, tuple) and inner:
        return "; ".join(_describe(sub) for sub in inner)
    if isinstance(e, MCPError):
        return f"MCP error {e.code}: {e.message}"
    if isinstance(e, ValidationError):
        return _validation_detail(e)
    return f"{type(e).__name__}: {str(e) or '(no message)'}"


def _validation_detail(e: ValidationError) -> str:
    """One line for a result the SDK rejected (its schema check for the negotiated version)."""
    problems = "; ".join(f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}" for err in e.errors())
    return f"mcp {e.title} rejected the gateway's result: {problems}"


class Checker:
    def __init__(self) -> None:
        self.failures: list[str] = []

    async def check(self, era: str, name: str, fn: Callable[[], Awaitable[None]]) -> bool:
        try:
            with anyio.fail_after(OP_TIMEOUT):
                await fn()
        except TimeoutError:
            return self._fail(era, name, f"timed out after {OP_TIMEOUT:.0f}s")
        except CheckFailed as e:
            return self._fail(era, name, str(e))
        except MCPError as e:
            return self._fail(era, name, f"MCP error {e.code}: {e.message}")
        except ValidationError as e:
            return self._fail(era, name, _validation_detail(e))
        except Exception as e:  # noqa: BLE001 - any other error is a failed check, with its detail
            return self._fail(era, name, _describe(e))
        print(f"ok  {era} {name}", flush=True)
        return True

    async def connect(
        self, stack: AsyncExitStack, url: str, token: str, era: str, wire: Wire, who: str
    ) -> Client | None:
        """Open a client on `stack` and verify its era; None (and a failure line) if that fails.

        Not under `fail_after`: the client's task group outlives this call, and an anyio
        cancel scope may not close around it. The connect is bounded instead by the HTTP
        client's 20 s timeouts, the session's 20 s read timeout and the caller's scope.
        """
        name = f"{who} connect"
        try:
            client = await connect(stack, url, token, era, wire)
        except MCPError as e:
            self._fail(era, name, f"MCP error {e.code}: {e.message}")
            return None
        except Exception as e:  # noqa: BLE001 - any other error is a failed check, with its detail
            self._fail(era, name, _describe(e))
            return None
        try:
            verify_era(client, era, wire)
        except CheckFailed as e:
            self._fail(era, name, str(e))
            return None
        print(f"ok  {era} {name}", flush=True)
        return client

    def _fail(self, era: str, name: str, detail: str) -> bool:
        line = f"FAIL {era} {name}: {detail}"
        print(line, flush=True)
        self.failures.append(line)
        return False


async def _all_pages(fetch: Callable[[str | None], Awaitable[Any]], field: str) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(PAGE_CAP):
        page = await fetch(cursor)
        items.extend(getattr(page, field))
        cursor = page.next_cursor
        if not cursor:
            return items
    raise CheckFailed(f"more than {PAGE_CAP} pages of {field}")


async def list_resources(client: Client) -> list[types.Resource]:
    return await _all_pages(lambda c: client.list_resources(cursor=c), "resources")


async def list_templates(client: Client) -> list[types.ResourceTemplate]:
    return await _all_pages(lambda c: client.list_resource_templates(cursor=c), "resource_templates")


async def list_prompts(client: Client) -> list[types.Prompt]:
    return await _all_pages(lambda c: client.list_prompts(cursor=c), "prompts")


def _message_text(message: types.PromptMessage) -> str:
    content = message.content
    if isinstance(content, types.TextContent):
        return content.text
    if isinstance(content, types.EmbeddedResource) and isinstance(content.resource, types.TextResourceContents):
        return content.resource.text
    return ""


async def connect(stack: AsyncExitStack, url: str, token: str, era: str, wire: Wire) -> Client:
    http = await stack.enter_async_context(
        httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx2.Timeout(OP_TIMEOUT),
            event_hooks={"request": [wire.on_request], "response": [wire.on_response]},
        )
    )
    client = Client(
        streamable_http_client(url, http_client=http),
        mode=CLIENT_MODE[era],
        read_timeout_seconds=OP_TIMEOUT,
        # Every check must reach the gateway, never a client-side cache entry.
        cache=None,
        client_info=types.Implementation(name="portcullis-python-sdk-check", version="1"),
    )
    return await stack.enter_async_context(client)


def verify_era(client: Client, era: str, wire: Wire) -> None:
    session = client.session
    if client.protocol_version != era:
        raise CheckFailed(f"negotiated {client.protocol_version!r}, want {era!r}")
    if era == LEGACY:
        if session.initialize_result is None:
            raise CheckFailed("no initialize result")
        if "initialize" not in wire.methods:
            raise CheckFailed(f"no initialize on the wire (sent {wire.methods})")
        if not wire.session_ids:
            raise CheckFailed("gateway issued no Mcp-Session-Id")
    else:
        if session.discover_result is None:
            raise CheckFailed("no server/discover result adopted")
        if "server/discover" not in wire.methods:
            raise CheckFailed(f"no server/discover on the wire (sent {wire.methods})")
        if "initialize" in wire.methods:
            raise CheckFailed("client fell back to initialize")
        if wire.session_ids:
            raise CheckFailed(f"stateless era but the gateway issued Mcp-Session-Id {sorted(wire.session_ids)}")


async def run_agent(checker: Checker, url: str, token: str, era: str) -> None:
    wire = Wire()
    async with AsyncExitStack() as stack:
        client = await checker.connect(stack, url, token, era, wire, "agent")
        if client is None:
            return

        async def resources_list() -> None:
            uris = [r.uri for r in await list_resources(client)]
            if RESOURCE_URI not in uris:
                raise CheckFailed(f"{RESOURCE_URI} not in {uris}")

        async def resources_read() -> None:
            result = await client.read_resource(RESOURCE_URI)
            if len(result.contents) != 1:
                raise CheckFailed(f"want 1 content item, got {len(result.contents)}: {result.contents}")
            content = result.contents[0]
            if content.uri != RESOURCE_URI:
                raise CheckFailed(f"content uri {content.uri!r}, want {RESOURCE_URI!r}")
            if not isinstance(content, types.TextResourceContents):
                raise CheckFailed(f"content is {type(content).__name__}, want text")
            try:
                doc = json.loads(content.text)
            except ValueError as e:
                raise CheckFailed(f"content text is not JSON ({e}): {content.text[:200]!r}") from None
            if not isinstance(doc, dict) or doc.get("name") != CONTACT_NAME:
                raise CheckFailed(f"name is {doc.get('name') if isinstance(doc, dict) else doc!r}, want {CONTACT_NAME!r}")

        async def templates_list() -> None:
            templates = [t.uri_template for t in await list_templates(client)]
            if TEMPLATE_URI not in templates:
                raise CheckFailed(f"{TEMPLATE_URI} not in {templates}")

        async def prompts_list() -> None:
            names = [p.name for p in await list_prompts(client)]
            if PROMPT_NAME not in names:
                raise CheckFailed(f"{PROMPT_NAME} not in {names}")

        async def prompts_get() -> None:
            result = await client.get_prompt(PROMPT_NAME, {"customer_id": "c_1"})
            texts = [_message_text(m) for m in result.messages]
            if not any(CONTACT_NAME in t for t in texts):
                raise CheckFailed(f"no message mentions {CONTACT_NAME!r}: {result.messages}")

        await checker.check(era, "agent resources/list", resources_list)
        await checker.check(era, "agent resources/read", resources_read)
        await checker.check(era, "agent resources/templates/list", templates_list)
        await checker.check(era, "agent prompts/list", prompts_list)
        await checker.check(era, "agent prompts/get", prompts_get)


async def run_hidden(checker: Checker, url: str, token: str, era: str) -> None:
    wire = Wire()
    async with AsyncExitStack() as stack:
        client = await checker.connect(stack, url, token, era, wire, "hidden")
        if client is None:
            return

        async def resources_list() -> None:
            uris = [r.uri for r in await list_resources(client)]
            if uris:
                raise CheckFailed(f"want no resources, got {uris}")

        async def resources_read() -> None:
            try:
                result = await client.read_resource(RESOURCE_URI)
            except MCPError as e:
                message = e.message
                if "forbidden" in message.lower():
                    raise CheckFailed(f"error reveals the resource (code {e.code}): {message!r}") from None
                if not message.lower().startswith("resource not found"):
                    raise CheckFailed(f"error message (code {e.code}) {message!r} does not start with 'resource not found'") from None
                return
            raise CheckFailed(f"read succeeded: {result.contents}")

        async def prompts_list() -> None:
            names = [p.name for p in await list_prompts(client)]
            if names:
                raise CheckFailed(f"want no prompts, got {names}")

        await checker.check(era, "hidden resources/list", resources_list)
        await checker.check(era, "hidden resources/read", resources_read)
        await checker.check(era, "hidden prompts/list", prompts_list)


async def main_async(args: argparse.Namespace) -> int:
    eras = [LEGACY, MODERN] if args.era == "both" else [args.era]
    checker = Checker()
    for era in eras:
        # Bound each whole connection, on top of the 20 s per operation.
        with anyio.move_on_after(OP_TIMEOUT * 8) as scope:
            await run_agent(checker, args.url, args.token, era)
        if scope.cancelled_caught:
            checker._fail(era, "agent", "connection did not finish in time")
        with anyio.move_on_after(OP_TIMEOUT * 6) as scope:
            await run_hidden(checker, args.url, args.hidden_token, era)
        if scope.cancelled_caught:
            checker._fail(era, "hidden", "connection did not finish in time")
    if checker.failures:
        print(f"{len(checker.failures)} check(s) failed:", file=sys.stderr)
        for line in checker.failures:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="tenant MCP endpoint, e.g. http://127.0.0.1:PORT/t/demo/mcp")
    parser.add_argument("--token", required=True, help="agent token that may see the crm resources and prompts")
    parser.add_argument("--hidden-token", required=True, help="token of an agent granted only the tool get_contact")
    parser.add_argument("--era", choices=[LEGACY, MODERN, "both"], default="both")
    args = parser.parse_args()
    # SDK warnings (e.g. about session termination) go to stderr, marked as the SDK's.
    logging.basicConfig(level=logging.WARNING, format="sdk %(levelname)s %(name)s: %(message)s")
    return anyio.run(main_async, args)


if __name__ == "__main__":
    sys.exit(main())
