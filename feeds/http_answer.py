"""Reading the answer of a server we post to (webhook receivers, WebSub hubs), bounded.

httpx reads a whole answer, and its timeout is per read: an endless answer fills the memory,
one trickling a byte now and then holds the caller for ever. ``read_answer`` takes at most
``limit`` bytes of it, and gives up at ``deadline``.
"""

from __future__ import annotations

import time

import httpx

__all__ = ["read_answer"]


def read_answer(response: httpx.Response, limit: int, deadline: float) -> str:
    """The first ``limit`` bytes of a streamed answer's body as text; ``TimeoutError`` when it
    is not complete by ``deadline`` (a ``time.monotonic`` value)."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= limit:
            break
        if time.monotonic() > deadline:
            raise TimeoutError
    return bytes(body[:limit]).decode(response.encoding or "utf-8", "replace")
