"""ratequeue: Python SDK for the ratequeue admission controller.

Sync (threads, Celery prefork workers, scripts):

    import ratequeue

    with ratequeue.acquire("openai-gpt4", load=2000, priority=100, lane="user-facing") as lease:
        ...
        lease.set_actual_load(used_tokens)

Async: `import ratequeue.aio as rq` and `async with rq.acquire(...) as lease:`.

Nodes come from RATEQUEUE_URL (comma-separated), the key from RATEQUEUE_API_KEY.
"""

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
from . import providers
from ._protocol import Limit, Progress, ProviderReport, Reported, Shadow
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
    "TLSFiles",
    "Limit",
    "Progress",
    "ProviderReport",
    "Reported",
    "Shadow",
    "providers",
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

# Public names print as `ratequeue.X` (in reprs and tracebacks), not as the private
# module that defines them.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) or callable(_obj):
        try:
            _obj.__module__ = __name__
        except (AttributeError, TypeError):
            pass
del _name, _obj
