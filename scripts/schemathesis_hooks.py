"""schemathesis hooks for scripts/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

An acquire on a full resource waits up to its `wait_ms` (at most an hour) before it is
answered: correct, and the same answer (`429 wait_timeout`) a short wait gets. So that a
generated acquire cannot hold the bounded run for longer than a request timeout, the
run's acquires wait at most WAIT_MS_RUN_MAX. Everything else is sent as generated.
"""

import schemathesis

WAIT_MS_RUN_MAX = 2_000


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.label != "POST /v1/resources/{name}/acquire":
        return
    body = case.body
    wait = body.get("wait_ms") if isinstance(body, dict) else None
    if isinstance(body, dict) and (wait is None or (isinstance(wait, int) and wait > WAIT_MS_RUN_MAX)):
        # Absent means the default, 30 s; anything that is not an integer is a 400 at once.
        body["wait_ms"] = WAIT_MS_RUN_MAX
