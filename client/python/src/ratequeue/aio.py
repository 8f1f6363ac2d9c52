"""The asyncio API: `import ratequeue.aio as rq`.

    async with rq.acquire("openai-gpt4", load=2000, priority=100, lane="user-facing") as lease:
        ...

The client is written in `_async.py` (the blocking `ratequeue` client is generated from
it); this module only exports it with the errors and helpers both APIs share. An
`aio.Client`'s connections belong to no event loop, so one client (and the module's
default client) serves every task, repeated `asyncio.run` calls and loops in several
threads, reusing warm connections.
"""

from __future__ import annotations

from ._async import AcquireContext, Client, Lease, acquire, default_client
from ._config import TLSFiles, Timing
from ._decorator import current_lease, limited
from ._errors import (
    Forbidden,
    InvalidRequest,
    LeaseLost,
    LoadExceedsLimit,
    Misconfigured,
    QueueFull,
    RatequeueError,
    Rejected,
    ResourceNotFound,
    Unauthorized,
    Unavailable,
    WaitTimeout,
    WouldBlock,
)
from ._lease import RELEASE_STATES
from ._protocol import Limit, Progress

# The asyncio names print as `ratequeue.aio.X` (in reprs and tracebacks).
for _obj in (Client, Lease, AcquireContext, acquire, default_client):
    _obj.__module__ = __name__
del _obj

__all__ = [
    "Client",
    "Lease",
    "AcquireContext",
    "acquire",
    "default_client",
    "limited",
    "current_lease",
    "Timing",
    "TLSFiles",
    "Limit",
    "Progress",
    "RELEASE_STATES",
    "RatequeueError",
    "Rejected",
    "QueueFull",
    "WaitTimeout",
    "WouldBlock",
    "LoadExceedsLimit",
    "InvalidRequest",
    "Unauthorized",
    "Forbidden",
    "ResourceNotFound",
    "LeaseLost",
    "Unavailable",
    "Misconfigured",
]
