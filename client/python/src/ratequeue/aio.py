"""The asyncio API: `import ratequeue.aio as rq`.

    async with rq.acquire("openai-gpt4", load=2000, priority=100, lane="user-facing") as lease:
        ...

The client is written in `_async.py` (the blocking `ratequeue` client is generated from
it); this module only exports it with the errors and helpers both APIs share. An
`aio.Client` keeps one connection pool per event loop, so one client (and the module's
default client) works under repeated `asyncio.run` calls and with loops in several threads.
"""

from __future__ import annotations

from ._async import AcquireContext, Client, Lease, acquire, default_client
from ._async_backend import POOLS_MAX
from ._config import Timing
from ._decorator import current_lease, limited
from ._errors import (
    Forbidden,
    InvalidRequest,
    LeaseLost,
    LoadExceedsLimit,
    QueueFull,
    RatequeueError,
    Rejected,
    ResourceNotFound,
    Unauthorized,
    Unavailable,
    WaitTimeout,
    WouldBlock,
)
from ._protocol import Limit

for _cls in (Client, Lease, AcquireContext):
    _cls.__module__ = __name__
del _cls

__all__ = [
    "Client",
    "Lease",
    "AcquireContext",
    "acquire",
    "default_client",
    "limited",
    "current_lease",
    "Timing",
    "Limit",
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
]
