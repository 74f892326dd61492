"""Tool definitions as the MCP server offers them, and their pqguard digests.

pqguard identifies a tool definition by the SHA3-256 of the canonical JSON of
the members that define it (``filter/core/src/tools.rs``): name, title,
description, inputSchema, outputSchema and annotations, keys sorted, no
whitespace, UTF-8. A policy pins a tool to that digest (``policy.pins``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .raw_mcp import RawMcpSession

DIGEST_MEMBERS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")


def tool_digest(tool: dict[str, Any]) -> str:
    """SHA3-256 hex digest of a tool definition, computed the way pqguard does."""
    members = {k: tool[k] for k in DIGEST_MEMBERS if k in tool}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha3_256(canonical.encode()).hexdigest()


def server_tools(mcp_url: str, version: str = "2025-11-25") -> list[dict[str, Any]]:
    """The tools the MCP server at ``mcp_url`` offers (ask it directly: no Envoy, no pqguard)."""
    with RawMcpSession(mcp_url, version, prefix="direct") as session:
        response, answer = session.request("tools/list")
    if response.status_code != 200 or answer is None or "result" not in answer:
        raise RuntimeError(f"tools/list at {mcp_url}: HTTP {response.status_code}: {response.text[:300]}")
    return answer["result"]["tools"]


def pins_of(tools: list[dict[str, Any]]) -> dict[str, str]:
    """``policy.pins`` for these tools: name -> digest."""
    return {tool["name"]: tool_digest(tool) for tool in tools}
