"""`@limited`: run a sync or async function while holding a lease.

Owns: the decorator only. The lease is reachable inside the function through
`current_lease()`, so it can settle its real usage with `set_actual_load`.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, Sequence, TypeVar, Union, cast

from ._lease import current_lease

__all__ = ["limited", "current_lease"]

F = TypeVar("F", bound=Callable[..., Any])

LoadSpec = Union[int, Callable[..., int]]


def limited(
    resource: str,
    *,
    load: LoadSpec = 1,
    priority: int = 10,
    lane: Optional[str] = None,
    ttl: Optional[float] = None,
    timeout: Optional[float] = None,
    api_key: Optional[str] = None,
    url: Union[str, Sequence[str], None] = None,
    client: Optional[Any] = None,
    holder: Optional[str] = None,
) -> Callable[[F], F]:
    """Hold a lease of `resource` for every call of the decorated function.

    `load` is an int or a callable given the function's arguments that returns one
    (e.g. an estimate of the prompt's tokens). Coroutine functions use `ratequeue.aio`,
    other functions the sync API; `holder` labels the leases (see `Client`); `client` must match (`ratequeue.aio.Client` for
    coroutine functions, `ratequeue.Client` otherwise).

        @limited("openai-gpt4", load=lambda prompt: estimate_tokens(prompt), lane="batch")
        async def complete(prompt: str) -> str:
            ...
            ratequeue.current_lease().set_actual_load(usage.total_tokens)
    """

    def load_for(args: Any, kwargs: Any) -> int:
        n = load(*args, **kwargs) if callable(load) else load
        return n

    def decorate(fn: F) -> F:
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError("@limited does not support generator functions")
        if inspect.iscoroutinefunction(fn):
            from . import aio

            if client is not None and not isinstance(client, aio.Client):
                raise TypeError("@limited on a coroutine function needs a ratequeue.aio.Client")

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                ctx = aio.acquire(
                    resource,
                    load=load_for(args, kwargs),
                    priority=priority,
                    lane=lane,
                    ttl=ttl,
                    timeout=timeout,
                    api_key=api_key,
                    url=url,
                    client=client,
                    holder=holder,
                )
                async with ctx:
                    return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        from . import _sync

        if client is not None and not isinstance(client, _sync.Client):
            raise TypeError("@limited on a plain function needs a ratequeue.Client")

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = _sync.acquire(
                resource,
                load=load_for(args, kwargs),
                priority=priority,
                lane=lane,
                ttl=ttl,
                timeout=timeout,
                api_key=api_key,
                url=url,
                client=client,
                holder=holder,
            )
            with ctx:
                return fn(*args, **kwargs)

        return cast(F, sync_wrapper)

    return decorate
