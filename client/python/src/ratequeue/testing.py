"""Test your code against a stand-in for the cluster, without sockets:

    def handler(request: ratequeue.testing.Request) -> ratequeue.testing.Response:
        ...
    client = ratequeue.Client("http://n1:7700", "key", transport=ratequeue.testing.MockTransport(handler))

A handler of the asyncio client (`ratequeue.aio.Client(transport=...)`) may be a coroutine
function. It returns a `Response` or raises one of the transport errors below (what the
SDK's own transport raises when a node cannot be reached, times out or breaks the
protocol), so retries and failover can be tested exactly.
"""

from ._http import (
    ConnectError,
    ConnectTimeout,
    MockTransport,
    PoolTimeout,
    ProtocolError,
    ReadError,
    ReadTimeout,
    Request,
    Response,
    Timeouts,
    TLSError,
    TransportError,
    WriteError,
    WriteTimeout,
)

__all__ = [
    "MockTransport",
    "Request",
    "Response",
    "Timeouts",
    "TransportError",
    "ConnectError",
    "ConnectTimeout",
    "PoolTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "ReadError",
    "WriteError",
    "ProtocolError",
    "TLSError",
]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
