"""ratequeue: Python SDK for the ratequeue admission controller.

Sync (threads, Celery prefork workers, scripts):

    import ratequeue

    with ratequeue.acquire("openai-gpt4", load=2000, priority=100, lane="user-facing") as lease:
        ...
        lease.set_actual_load(used_tokens)

Async: `import ratequeue.aio as rq` and `async with rq.acquire(...) as lease:`.

Nodes come from RATEQUEUE_URL (comma-separated), the key from RATEQUEUE_API_KEY.
"""

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
from ._sync import AcquireContext, Client, Lease, acquire, default_client
from ._version import __version__

__all__ = [
    "__version__",
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
