"""Celery: prefork workers share one LLM token budget across every machine.

The sync API works inside prefork worker processes: the default client notices the fork
and opens its own connections, and leases renew from a daemon thread while the task runs.
A task that cannot get a slot in time is retried by Celery after the cluster's
`retry_after`, instead of piling onto the provider's own 429s.

    celery -A celery_tasks worker --concurrency 8   # with RATEQUEUE_URL / RATEQUEUE_API_KEY
"""

from __future__ import annotations

import os
import random
import time
from typing import Any, Dict, Tuple

from celery import Celery

import ratequeue

RESOURCE = os.environ.get("RATEQUEUE_RESOURCE", "openai-gpt4")

app = Celery("llm_tasks", broker=os.environ.get("CELERY_BROKER_URL", "memory://"))


def estimate_tokens(document: str, max_output_tokens: int) -> int:
    return len(document) // 4 + 1 + max_output_tokens


def call_llm(document: str, max_output_tokens: int) -> Tuple[str, int]:
    """Stand-in for the provider call. With the OpenAI SDK:

        resp = openai_client.chat.completions.create(model="gpt-4o-mini", messages=[...],
                                                     max_tokens=max_output_tokens)
        return resp.choices[0].message.content, resp.usage.total_tokens
    """
    time.sleep(0.005)
    used = len(document) // 4 + 1 + random.randint(1, max_output_tokens)
    return f"summary of {len(document)} characters", used


def summarize_body(document: str, max_output_tokens: int = 200) -> Dict[str, Any]:
    """The task's work, callable without a broker (tests run it in worker processes)."""
    estimate = estimate_tokens(document, max_output_tokens)
    with ratequeue.acquire(RESOURCE, load=estimate, lane="batch", priority=5, timeout=60) as lease:
        lease.check()  # before an expensive step: stop if the lease was lost
        summary, used = call_llm(document, max_output_tokens)
        lease.set_actual_load(used)
        return {
            "summary": summary,
            "reserved": estimate,
            "used": used,
            "fencing_token": lease.fencing_token,
            "pid": os.getpid(),
        }


@app.task(bind=True, max_retries=10)
def summarize(self: Any, document: str, max_output_tokens: int = 200) -> Dict[str, Any]:
    try:
        return summarize_body(document, max_output_tokens)
    except ratequeue.Rejected as e:
        # Queue full or waited too long: come back when the binding limit frees up.
        raise self.retry(exc=e, countdown=(e.retry_after or 5.0) + random.random())
    except ratequeue.Unavailable as e:
        raise self.retry(exc=e, countdown=5.0)
