"""MCP sessions with the official MCP Python SDK (``mcp`` 2.x), over Streamable HTTP."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
import mcp.client.session as sdk_client_session
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import TextContent, TextResourceContents
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS


def ssl_context(ca_cert: Path) -> ssl.SSLContext:
    """A client context that trusts only the test CA."""
    return ssl.create_default_context(cafile=str(ca_cert))


@contextmanager
def handshake_offer(version: str | None) -> Iterator[None]:
    """Make the SDK client's ``initialize`` offer ``version`` instead of its newest handshake revision.

    The SDK 2.3.0 client has no option for this: ``ClientSession.initialize()`` always
    offers ``mcp.client.session.LATEST_HANDSHAKE_VERSION`` (2025-11-25), and a server that
    supports the offered revision answers with it. Only the offer changes; everything the
    client does afterwards (headers, session id, GET stream, DELETE) is the SDK's own
    behaviour for the negotiated revision. ``None`` leaves the SDK alone.
    """
    if version is None:
        yield
        return
    if version not in HANDSHAKE_PROTOCOL_VERSIONS:
        raise ValueError(f"{version!r} is not a handshake revision of the SDK: {HANDSHAKE_PROTOCOL_VERSIONS}")
    saved = sdk_client_session.LATEST_HANDSHAKE_VERSION
    sdk_client_session.LATEST_HANDSHAKE_VERSION = version
    try:
        yield
    finally:
        sdk_client_session.LATEST_HANDSHAKE_VERSION = saved


@asynccontextmanager
async def connect(
    url: str,
    *,
    ca_cert: Path | None = None,
    mode: str = "legacy",
    read_timeout: float = 30.0,
    handshake_version: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[Client]:
    """An SDK ``Client`` connected to ``url``.

    ``mode="legacy"`` performs the ``initialize`` handshake (protocol revisions up
    to 2025-11-25, with a session id); ``"auto"`` lets the SDK probe
    ``server/discover`` first and use the 2026-07-28 revision if the server has it.
    ``handshake_version`` (legacy mode) is the revision ``initialize`` offers (see
    :func:`handshake_offer`). ``ca_cert`` is needed for an ``https://`` URL signed by the test CA.
    ``headers`` go with every request of the session (for example ``Authorization: Bearer …``):
    the SDK sends whatever its httpx client is configured with.
    """
    verify: ssl.SSLContext | bool = ssl_context(ca_cert) if ca_cert else True
    # trust_env=False: loopback traffic must never go through a proxy from the environment.
    async with httpx2.AsyncClient(verify=verify, trust_env=False, timeout=httpx2.Timeout(30.0, read=300.0),
                                  headers=dict(headers or {})) as http:
        transport = streamable_http_client(url, http_client=http)
        with handshake_offer(handshake_version):
            async with Client(transport, mode=mode, read_timeout_seconds=read_timeout) as client:
                yield client


@dataclass
class SessionSummary:
    protocol_version: str | None
    tools: list[str]
    echo_text: str | None
    prompts: list[str]
    prompt_text: str | None
    resources: list[str]
    resource_text: str | None


def _text(content: object) -> str | None:
    return content.text if isinstance(content, TextContent) else None


async def scripted_session(
    url: str,
    *,
    ca_cert: Path | None = None,
    mode: str = "legacy",
    echo_text: str = "hello through pqguard",
    full: bool = True,
    timeout: float = 60.0,
    headers: Mapping[str, str] | None = None,
) -> SessionSummary:
    """initialize (or discover), tools/list, tools/call echo; with ``full`` also the prompt and the resource.
    ``headers`` go with every request (see :func:`connect`)."""
    with anyio.fail_after(timeout):
        async with connect(url, ca_cert=ca_cert, mode=mode, headers=headers) as client:
            tools = await client.list_tools()
            echoed = await client.call_tool("echo", {"text": echo_text})
            summary = SessionSummary(
                protocol_version=client.session.protocol_version,
                tools=[tool.name for tool in tools.tools],
                echo_text=_text(echoed.content[0]) if echoed.content else None,
                prompts=[], prompt_text=None, resources=[], resource_text=None,
            )
            if full:
                prompts = await client.list_prompts()
                summary.prompts = [prompt.name for prompt in prompts.prompts]
                prompt = await client.get_prompt("summarize", {"topic": "post-quantum TLS"})
                summary.prompt_text = _text(prompt.messages[0].content) if prompt.messages else None
                resources = await client.list_resources()
                summary.resources = [str(resource.uri) for resource in resources.resources]
                contents = await client.read_resource("records://index")
                first = contents.contents[0] if contents.contents else None
                summary.resource_text = first.text if isinstance(first, TextResourceContents) else None
            return summary


def run_scripted_session(url: str, **kwargs: object) -> SessionSummary:
    """Synchronous wrapper around :func:`scripted_session`."""
    return anyio.run(lambda: scripted_session(url, **kwargs))  # type: ignore[arg-type]
