"""What the sync and async leases share: the granted fields, the reserve-then-settle
`actual_load`, the lost flag, the renewal schedule, and `current_lease()`.

Must never do I/O: the `Lease` of `_async.py` (and of `_sync.py`, generated from it)
adds the renewal thread or task and the release call.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from typing import TYPE_CHECKING, Any, Optional, Tuple

from ._config import Timing, check_load
from ._errors import LeaseLost
from ._net import fork_generation
from ._protocol import Grant, Limit, Shadow

log = logging.getLogger("ratequeue")

#: Every value `Lease.release()` returns: the cluster released the lease; it had been
#: released already (by this or an earlier call); or this process is a fork of the one
#: that acquired it, which alone may release it (nothing was sent).
RELEASE_STATES = ("released", "already_released", "not_owner")

#: The innermost lease held by the running thread or task (see `current_lease`).
_current: contextvars.ContextVar[Optional["LeaseBase"]] = contextvars.ContextVar(
    "ratequeue_current_lease", default=None
)


def current_lease() -> Optional[Any]:
    """The innermost lease held by the running thread or asyncio task through
    `acquire(...)` or `@limited`, else None. Lets a decorated function settle its usage:
    `ratequeue.current_lease().set_actual_load(tokens)`."""
    return _current.get()


if TYPE_CHECKING:
    CurrentToken = contextvars.Token[Optional["LeaseBase"]]


def push_current(lease: LeaseBase) -> CurrentToken:
    return _current.set(lease)


def pop_current(token: Optional[CurrentToken]) -> None:
    if token is None:
        return
    try:
        _current.reset(token)
    except ValueError:
        # Exited in another context than it was entered (e.g. a generator moved across
        # tasks): leave the variable as that context has it.
        pass


class LeaseBase:
    """A granted slot. Read `id`, `fencing_token`, `load`; call `set_actual_load(n)` to
    report real usage at release; check `lost` (or call `check()`) in long loops."""

    def __init__(self, grant: Grant, request_id: str, timing: Timing, granted_at: float) -> None:
        self.id: str = grant.lease_id
        self.resource: str = grant.resource
        self.lane: str = grant.lane
        self.load: int = grant.load
        self.fencing_token: int = grant.fencing_token
        self.ttl_ms: int = grant.ttl_ms
        self.queued_ms: int = grant.queued_ms
        self.limits: Tuple[Limit, ...] = grant.limits
        # On a dry-run resource: what enforce would have done (None when enforced).
        self.shadow: Optional[Shadow] = grant.shadow
        self.request_id: str = request_id
        self._timing = timing
        # The clock time the grant's request was sent: the lease surely lives until this
        # plus ttl (cluster time never runs ahead of ours). Renewals move it forward.
        self._confirmed_at = granted_at
        self._actual_load: Optional[int] = None
        self._lost: Optional[LeaseLost] = None
        self._released = False
        self._fork_generation = fork_generation()
        # Guards `_lost` and `_released` against the renewal thread (sync) and orders a
        # late renewal failure after the release that caused it.
        self._state_lock = threading.Lock()

    # --- public -----------------------------------------------------------------------

    @property
    def actual_load(self) -> Optional[int]:
        """What `set_actual_load` recorded, sent with the release."""
        return self._actual_load

    def set_actual_load(self, load: int) -> None:
        """Report the load really used (e.g. the LLM's token count), to be settled at
        release: unused reservation is credited back, an excess is debited."""
        self._actual_load = check_load("actual_load", load)

    @property
    def lost(self) -> bool:
        """True once the lease is known or presumed gone. Stop using the resource."""
        return self._lost is not None

    @property
    def lost_error(self) -> Optional[LeaseLost]:
        return self._lost

    @property
    def released(self) -> bool:
        return self._released

    @property
    def ttl(self) -> float:
        """The lease's TTL in seconds."""
        return self.ttl_ms / 1000.0

    def check(self) -> None:
        """Raise `LeaseLost` if the lease is lost; call it between units of work."""
        lost = self._lost
        if lost is not None:
            raise lost

    def __repr__(self) -> str:
        state = "lost" if self.lost else ("released" if self._released else "held")
        return (
            f"<{type(self).__module__}.{type(self).__name__} id={self.id!r} "
            f"resource={self.resource!r} load={self.load} fencing_token={self.fencing_token} {state}>"
        )

    # --- for the drivers --------------------------------------------------------------

    def _renew_interval(self) -> float:
        return max(self._timing.renew_interval_min_s, self.ttl_ms / 1000.0 * self._timing.renew_fraction)

    def _expiry(self) -> float:
        """Clock time after which the lease may have expired without us knowing."""
        return self._confirmed_at + self.ttl_ms / 1000.0

    def _renewed(self, sent_at: float, ttl_ms: int, fencing_token: int) -> None:
        self._confirmed_at = max(self._confirmed_at, sent_at)
        self.ttl_ms = ttl_ms
        self.fencing_token = fencing_token

    def _mark_lost(self, error: LeaseLost) -> bool:
        """Record the loss unless the lease was released meanwhile (a renewal racing
        the release sees `lease_expired` for a lease we gave back: not a loss)."""
        with self._state_lock:
            if self._released or self._lost is not None:
                return False
            if error.lease_id is None:
                error.lease_id = self.id
            self._lost = error
        log.warning("ratequeue lease %s on %r lost: %s", self.id, self.resource, error)
        return True

    def _begin_release(self) -> bool:
        """Mark released; False if it already was (release is then a no-op)."""
        with self._state_lock:
            if self._released:
                return False
            self._released = True
            return True

    def _forked_copy(self) -> bool:
        """True in a child process that inherited this lease: only the process that
        acquired it renews or releases it."""
        return fork_generation() != self._fork_generation


class Stopped(Exception):
    """A renewal call was abandoned because its stop event was set (the lease is being
    released). Blocking flavour only: an asyncio renewal is cancelled instead."""


def presumed_lost(lease: LeaseBase, cause: BaseException) -> LeaseLost:
    err = LeaseLost(
        f"could not renew lease for longer than its TTL ({lease.ttl_ms} ms): {cause}",
        code="renewal_failed",
        lease_id=lease.id,
    )
    err.__cause__ = cause
    return err


def exit_policy(lease: LeaseBase, body_raised: bool) -> Optional[LeaseLost]:
    """The error to raise when leaving an `acquire` block: the loss, unless the block
    raised its own exception (which then propagates; the loss was logged)."""
    if lease.lost_error is None:
        return None
    if body_raised:
        log.warning(
            "ratequeue lease %s was lost while the block raised; propagating the block's exception",
            lease.id,
        )
        return None
    return lease.lost_error

