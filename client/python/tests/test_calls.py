"""The call machinery (ratequeue._protocol through the sync driver): node choice, redirects,
leader caching, retries with the same request_id, backoff and deadlines, error mapping.

Time here is a `FakeTime`: sleeps are recorded and move the clock, never the wall.
"""

from __future__ import annotations

import os
import random
import socket
from typing import Optional

import pytest

import ratequeue
from ratequeue.testing import ConnectError, ReadError, ReadTimeout, Response
from fakecluster import FAST, URLS, FakeCluster, FakeTime, Seen, error
from ratequeue._protocol import backoff, base_of


def make_client(cluster: FakeCluster, fake_time: FakeTime, urls: str = URLS, **timing: float) -> ratequeue.Client:
    t = ratequeue.Timing(**{**FAST.__dict__, **timing})
    return ratequeue.Client(
        urls,
        "k3y",
        timing=t,
        transport=cluster.transport(),
        clock=fake_time.clock,
        sleep=fake_time.sleep,
        rng=random.Random(7),
    )


def test_acquire_sends_the_documented_body_and_parses_the_lease(cluster: FakeCluster, fake_time: FakeTime) -> None:
    c = make_client(cluster, fake_time, urls="http://n1:7700")
    with c.acquire("gpt", load=2000, priority=100, lane="user-facing", ttl=12.5, timeout=3) as lease:
        assert lease.id.startswith("101-")
        assert lease.fencing_token == 101
        assert lease.load == 2000
        assert lease.lane == "user-facing"
        assert lease.ttl_ms == 12_500
        assert lease.limits[0] == ratequeue.Limit("concurrency", 10, 9)
        lease.set_actual_load(1234)
    (acq,) = cluster.of_kind("acquire")
    assert acq.method == "POST" and acq.path == "/v1/resources/gpt/acquire"
    assert acq.body == {
        "load": 2000,
        "priority": 100,
        "lane": "user-facing",
        "ttl_ms": 12_500,
        "wait_ms": 3000,
        "request_id": lease.request_id,
        "holder": f"{socket.gethostname()}:{os.getpid()}",
    }
    assert acq.headers["authorization"] == "Bearer k3y"
    (rel,) = cluster.of_kind("release")
    assert rel.path == f"/v1/leases/{lease.id}/release"
    assert rel.body == {"actual_load": 1234}
    assert cluster.leases[lease.id].actual_load == 1234


def test_defaults_omit_lane_and_ttl_and_wait_the_default(cluster: FakeCluster, fake_time: FakeTime) -> None:
    c = make_client(cluster, fake_time, urls="http://n1:7700", wait_default_s=30.0)
    with c.acquire("gpt"):
        pass
    (acq,) = cluster.of_kind("acquire")
    assert set(acq.body) == {"load", "priority", "wait_ms", "request_id", "holder"}
    assert acq.body["load"] == 1 and acq.body["priority"] == 10 and acq.body["wait_ms"] == 30_000
    (rel,) = cluster.of_kind("release")
    assert rel.body == {}


def test_redirect_is_followed_with_method_and_body_and_the_leader_is_cached(
    cluster: FakeCluster, fake_time: FakeTime
) -> None:
    cluster.leader = "http://n2:7700"
    c = make_client(cluster, fake_time, urls="http://n3:7700,http://n1:7700")
    with c.acquire("gpt", load=7, request_id="rid-1"):
        pass
    acquires = cluster.of_kind("acquire")
    assert [s.node for s in acquires] == [acquires[0].node, "http://n2:7700"]
    assert acquires[0].node != "http://n2:7700"
    assert acquires[0].body == acquires[1].body  # body preserved across the 307
    assert acquires[1].method == "POST"
    assert c.leader == "http://n2:7700"
    # Release and the next acquire go straight to the cached leader.
    assert [s.node for s in cluster.of_kind("release")] == ["http://n2:7700"]
    with c.acquire("gpt"):
        pass
    assert cluster.of_kind("acquire")[-1].node == "http://n2:7700"
    assert len(cluster.of_kind("acquire")) == 3
    assert fake_time.sleeps == []


def test_redirect_keeps_a_path_prefix_in_the_leader_base() -> None:
    path = "/v1/resources/gpt/acquire"
    assert base_of("http://lb:80/rq" + path, path) == "http://lb:80/rq"
    assert base_of("http://n2:7700" + path, path) == "http://n2:7700"
    assert base_of("http://n2:7700/elsewhere", path) == "http://n2:7700"


def test_too_many_redirects_is_retried_then_unavailable(cluster: FakeCluster, fake_time: FakeTime) -> None:
    def loop(seen: Seen) -> Optional[Response]:
        return Response(307, {"location": seen.node + seen.path})

    cluster.hooks.append(loop)
    c = make_client(cluster, fake_time, attempts_max=3, redirects_max=2)
    with pytest.raises(ratequeue.Unavailable) as ei:
        c.acquire_lease("gpt")
    assert ei.value.code == "redirect_loop"
    assert len(cluster.of_kind("acquire")) == 3 * 3  # 3 attempts of 1 + 2 redirects


def test_connection_refused_moves_to_the_next_node_without_sleeping(cluster: FakeCluster, fake_time: FakeTime) -> None:
    def n1_down(seen: Seen) -> Optional[Response]:
        if seen.node == "http://n1:7700":
            raise ConnectError("refused")
        return None

    cluster.hooks.append(n1_down)
    cluster.leader = "http://n2:7700"
    c = make_client(cluster, fake_time, urls="http://n1:7700,http://n2:7700")
    c._nodes.leader = "http://n1:7700"  # a stale cache: n1 was the leader
    with c.acquire("gpt"):
        pass
    assert [s.node for s in cluster.of_kind("acquire")] == ["http://n1:7700", "http://n2:7700"]
    assert fake_time.sleeps == []
    assert c.leader == "http://n2:7700"


def test_every_node_unreachable_backs_off_until_the_budget_is_spent(cluster: FakeCluster, fake_time: FakeTime) -> None:
    def down(seen: Seen) -> Optional[Response]:
        raise ConnectError("refused")

    cluster.hooks.append(down)
    c = make_client(cluster, fake_time, retry_budget_s=1.0, backoff_initial_s=0.05, backoff_max_s=0.2, attempts_max=1000)
    start = fake_time.now
    with pytest.raises(ratequeue.Unavailable) as ei:
        c.acquire_lease("gpt", timeout=0)
    assert ei.value.code == "unreachable"
    assert isinstance(ei.value.__cause__, ConnectError)
    assert fake_time.now - start <= 1.0
    assert fake_time.sleeps and all(0 <= s <= 0.2 + 1e-9 for s in fake_time.sleeps)
    # Each round tries all three nodes before sleeping.
    nodes = [s.node for s in cluster.of_kind("acquire")]
    assert set(nodes[:3]) == {"http://n1:7700", "http://n2:7700", "http://n3:7700"}


def test_ambiguous_failures_are_retried_with_the_same_request_id_and_a_shorter_wait(
    cluster: FakeCluster, fake_time: FakeTime
) -> None:
    calls = {"n": 0}

    def flaky(seen: Seen) -> Optional[Response]:
        if seen.kind != "acquire":
            return None
        calls["n"] += 1
        if calls["n"] == 1:
            # The server received it (and granted!) but the answer was lost.
            cluster.acquire("gpt", dict(seen.body))
            fake_time.now += 2.0
            raise ReadTimeout("lost answer")
        if calls["n"] == 2:
            raise ReadError("reset")
        return None

    cluster.hooks.append(flaky)
    c = make_client(cluster, fake_time, urls="http://n1:7700")
    with c.acquire("gpt", timeout=10) as lease:
        pass
    acquires = cluster.of_kind("acquire")
    assert len(acquires) == 3
    assert len({a.body["request_id"] for a in acquires}) == 1
    assert acquires[0].body["wait_ms"] == 10_000
    assert acquires[2].body["wait_ms"] <= 8_000
    # One request_id, one lease: the retry got the lease granted by the lost attempt.
    assert len(cluster.leases) == 1 and lease.id in cluster.leases
    assert cluster.leases[lease.id].released


def test_no_leader_is_retried_honouring_retry_after(cluster: FakeCluster, fake_time: FakeTime) -> None:
    cluster.leader = None
    answers = {"n": 0}

    def elect(seen: Seen) -> Optional[Response]:
        answers["n"] += 1
        if answers["n"] == 3:
            cluster.leader = "http://n3:7700"
        return None

    cluster.hooks.append(elect)
    c = make_client(cluster, fake_time)
    with c.acquire("gpt"):
        pass
    assert len(fake_time.sleeps) >= 2
    assert all(s >= 0.05 for s in fake_time.sleeps[:2])  # retry_after_ms = 50
    assert len({a.body["request_id"] for a in cluster.of_kind("acquire")}) == 1
    assert c.leader == "http://n3:7700"


def test_commit_timeout_is_retried_and_deduplicated(cluster: FakeCluster, fake_time: FakeTime) -> None:
    first = {"done": False}

    def ambiguous(seen: Seen) -> Optional[Response]:
        if seen.kind == "acquire" and not first["done"]:
            first["done"] = True
            cluster.acquire("gpt", dict(seen.body))
            return error(504, "commit_timeout", "may or may not")
        return None

    cluster.hooks.append(ambiguous)
    c = make_client(cluster, fake_time, urls="http://n1:7700")
    lease = c.acquire_lease("gpt")
    assert len(cluster.leases) == 1 and lease.id in cluster.leases
    lease.release()


def test_attempts_max_bounds_retries(cluster: FakeCluster, fake_time: FakeTime) -> None:
    cluster.leader = None
    c = make_client(cluster, fake_time, attempts_max=4, retry_budget_s=1e6)
    with pytest.raises(ratequeue.Unavailable) as ei:
        c.acquire_lease("gpt")
    assert ei.value.code == "no_leader" and ei.value.retry_after == 0.05
    assert len(cluster.of_kind("acquire")) == 4


def test_late_would_block_after_retries_is_a_wait_timeout(cluster: FakeCluster, fake_time: FakeTime) -> None:
    cluster.resources["gpt"].concurrency = 0
    calls = {"n": 0}

    def late(seen: Seen) -> Optional[Response]:
        calls["n"] += 1
        if calls["n"] == 1:
            fake_time.now += 5.0  # the wait is used up by a lost attempt
            raise ReadTimeout("slow")
        return None

    cluster.hooks.append(late)
    c = make_client(cluster, fake_time, urls="http://n1:7700")
    with pytest.raises(ratequeue.WaitTimeout) as ei:
        c.acquire_lease("gpt", timeout=1)
    assert cluster.of_kind("acquire")[-1].body["wait_ms"] == 0
    assert ei.value.retry_after == 0.25


def test_timeout_zero_tries_once(cluster: FakeCluster, fake_time: FakeTime) -> None:
    cluster.resources["gpt"].concurrency = 0
    c = make_client(cluster, fake_time)
    with pytest.raises(ratequeue.WouldBlock) as ei:
        c.acquire_lease("gpt", timeout=0)
    assert ei.value.status == 429 and ei.value.retry_after == 0.25
    (acq,) = [s for s in cluster.of_kind("acquire") if s.node == cluster.leader]
    assert acq.body["wait_ms"] == 0
    assert fake_time.sleeps == []


CODES = [
    (400, "invalid_request", ratequeue.InvalidRequest, None),
    (401, "unauthorized", ratequeue.Unauthorized, None),
    (403, "forbidden", ratequeue.Forbidden, None),
    (404, "resource_not_found", ratequeue.ResourceNotFound, None),
    (413, "payload_too_large", ratequeue.InvalidRequest, None),
    (422, "load_exceeds_limit", ratequeue.LoadExceedsLimit, None),
    (429, "queue_full", ratequeue.QueueFull, 1500),
    (429, "wait_timeout", ratequeue.WaitTimeout, 20),
    (429, "would_block", ratequeue.WouldBlock, 999),
    (500, "internal", ratequeue.RatequeueError, None),
]


@pytest.mark.parametrize("status,code,cls,retry_ms", CODES)
def test_each_error_code_maps_to_its_exception(
    cluster: FakeCluster, fake_time: FakeTime, status: int, code: str, cls: type, retry_ms: Optional[int]
) -> None:
    cluster.hooks.append(lambda seen: error(status, code, "nope", retry_after_ms=retry_ms))
    c = make_client(cluster, fake_time)
    with pytest.raises(cls) as ei:
        c.acquire_lease("gpt")
    e = ei.value
    assert isinstance(e, ratequeue.RatequeueError)
    assert (e.code, e.status, e.message) == (code, status, "nope")
    assert e.retry_after == (None if retry_ms is None else retry_ms / 1000)
    assert len(cluster.of_kind("acquire")) == 1  # not retried (the hook answers every node)


@pytest.mark.parametrize("code", ["no_leader", "shutting_down", "commit_timeout"])
def test_retryable_codes_map_to_unavailable_when_the_budget_runs_out(
    cluster: FakeCluster, fake_time: FakeTime, code: str
) -> None:
    cluster.hooks.append(lambda seen: error(503, code, "later", retry_after_ms=500))
    c = make_client(cluster, fake_time, retry_budget_s=2.0)
    with pytest.raises(ratequeue.Unavailable) as ei:
        c.acquire_lease("gpt", timeout=0)
    assert ei.value.code == code and ei.value.retry_after == 0.5
    assert len(cluster.of_kind("acquire")) > 1


def test_retry_after_header_is_used_without_a_body() -> None:
    from ratequeue._errors import error_from_response

    e = error_from_response(Response(429, {"retry-after": "3"}))
    assert isinstance(e, ratequeue.Rejected) and e.retry_after == 3.0 and e.code == "rejected"
    e = error_from_response(Response(503, {}, "<html>bad gateway</html>".encode()))
    assert isinstance(e, ratequeue.Unavailable) and e.status == 503
    e = error_from_response(Response(418))
    assert type(e) is ratequeue.RatequeueError and e.code == "http_418"


def test_a_code_the_sdk_does_not_know_is_a_plain_error_with_its_code_and_message() -> None:
    from ratequeue._errors import error_from_response, is_retryable

    # A newer server's code is not typed by its status (a 422 is not LoadExceedsLimit).
    for status in (400, 409, 422, 429, 500):
        e = error_from_response(error(status, "from_a_newer_server", "news", retry_after_ms=250))
        assert type(e) is ratequeue.RatequeueError, status
        assert (e.code, e.message, e.status, e.retry_after) == (
            "from_a_newer_server",
            "news",
            status,
            0.25,
        )
        assert not is_retryable(e)
    # 502/503/504 are unavailable, and retried, whatever the code (as a proxy's answer).
    for status in (502, 503, 504):
        e = error_from_response(error(status, "from_a_newer_server", "news"))
        assert isinstance(e, ratequeue.Unavailable) and e.code == "from_a_newer_server"
        assert is_retryable(e)
    e = error_from_response(error(503, "too_many_connections", "cap"))
    assert isinstance(e, ratequeue.Unavailable) and is_retryable(e)


def test_lease_errors_map_to_lease_lost() -> None:
    from ratequeue._errors import error_from_response

    for status, code in [(410, "lease_expired"), (404, "lease_not_found")]:
        e = error_from_response(error(status, code))
        assert isinstance(e, ratequeue.LeaseLost) and e.code == code


def test_backoff_is_jittered_bounded_and_respects_retry_after() -> None:
    t = ratequeue.Timing(backoff_initial_s=0.1, backoff_max_s=1.0)
    rng = random.Random(1)
    delays = [backoff(t, n, None, rng) for n in range(1, 40)]
    assert all(0 <= d <= 1.0 for d in delays)
    assert len(set(delays)) == len(delays)  # jittered, not lockstep
    assert all(backoff(t, 1, 2.0, rng) >= 2.0 for _ in range(20))


def test_bad_arguments_fail_before_any_request(cluster: FakeCluster, fake_time: FakeTime) -> None:
    c = make_client(cluster, fake_time)
    with pytest.raises(ValueError):
        c.acquire("bad/name")
    with pytest.raises(ValueError):
        c.acquire("gpt", load=-1)
    with pytest.raises(TypeError):
        c.acquire("gpt", load=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        c.acquire("gpt", lane="no spaces")
    with pytest.raises(ValueError):
        c.acquire("gpt", ttl=0.01)
    with pytest.raises(ValueError):
        c.acquire("gpt", timeout=-1)
    with pytest.raises(ValueError):
        ratequeue.Client("ftp://x")
    assert cluster.seen == []


def test_urls_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATEQUEUE_URL", " http://a:1/ , http://b:2,http://a:1")
    monkeypatch.setenv("RATEQUEUE_API_KEY", "envkey")
    c = ratequeue.Client()
    assert c.urls == ("http://a:1", "http://b:2")
    assert c._api_key == "envkey"
    assert ratequeue.default_client() is ratequeue.default_client()
    assert ratequeue.default_client().urls == ("http://a:1", "http://b:2")
    assert ratequeue.default_client("http://c:3") is not ratequeue.default_client()


def test_holder_is_the_label_then_host_and_pid(cluster: FakeCluster, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch) -> None:
    from ratequeue._config import holder

    place = f"{socket.gethostname()}:{os.getpid()}"
    monkeypatch.setenv("RATEQUEUE_HOLDER", " celery ")
    c = make_client(cluster, fake_time, urls="http://n1:7700")
    assert c.holder == "celery"
    with c.acquire("gpt"):
        pass
    with c.acquire("gpt", holder="job 42"):
        pass
    monkeypatch.delenv("RATEQUEUE_HOLDER")
    with make_client(cluster, fake_time, urls="http://n1:7700").acquire("gpt"):
        pass
    sent = [a.body["holder"] for a in cluster.of_kind("acquire")]
    assert sent == [f"celery@{place}", f"job 42@{place}", place]
    # Cut so that host and pid always fit in the server's 128; the host to 64.
    h = holder("l" * 128, "h" * 100, 4294967295)
    assert len(h) == 128 and h.endswith("@" + "h" * 64 + ":4294967295")
    assert holder(None, "hôte\n", 7) == "h?te?:7"
    assert holder(None, "", 7) == "unknown-host:7"
    # Labels the server would refuse fail before any request.
    n = len(cluster.seen)
    for bad in ["", "tab\t", "é", "a" * 129]:
        with pytest.raises(ValueError):
            c.acquire("gpt", holder=bad)
        with pytest.raises(ValueError):
            ratequeue.Client("http://n1:7700", holder=bad)
    monkeypatch.setenv("RATEQUEUE_HOLDER", "é")
    with pytest.raises(ValueError, match="RATEQUEUE_HOLDER"):
        ratequeue.Client("http://n1:7700")
    assert len(cluster.seen) == n


def test_tls_files_come_from_arguments_else_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    from ratequeue._config import resolve_tls

    assert resolve_tls() == ratequeue.TLSFiles() and resolve_tls().is_default
    monkeypatch.setenv("RATEQUEUE_CA_FILE", "/env/ca.crt")
    monkeypatch.setenv("RATEQUEUE_CLIENT_CERT", "/env/c.crt")
    monkeypatch.setenv("RATEQUEUE_CLIENT_KEY", "/env/c.key")
    assert resolve_tls() == ratequeue.TLSFiles("/env/ca.crt", "/env/c.crt", "/env/c.key")
    # An argument beats its variable; the certificate and key go together.
    assert resolve_tls(ca_file=Path("/arg/ca.crt")) == ratequeue.TLSFiles("/arg/ca.crt", "/env/c.crt", "/env/c.key")
    assert resolve_tls(client_cert="/a.crt", client_key="/a.key") == ratequeue.TLSFiles(
        "/env/ca.crt", "/a.crt", "/a.key"
    )
    with pytest.raises(ValueError, match="client_cert= and client_key="):
        resolve_tls(client_cert="/a.crt")
    # Empty values count as unset.
    monkeypatch.setenv("RATEQUEUE_CA_FILE", "")
    monkeypatch.setenv("RATEQUEUE_CLIENT_CERT", "")
    with pytest.raises(ValueError, match="RATEQUEUE_CLIENT_CERT and RATEQUEUE_CLIENT_KEY"):
        resolve_tls()
    monkeypatch.setenv("RATEQUEUE_CLIENT_KEY", "")
    assert resolve_tls(ca_file="") == ratequeue.TLSFiles()


def test_missing_key_is_unauthorized(cluster: FakeCluster, fake_time: FakeTime) -> None:
    c = ratequeue.Client(URLS, None, timing=FAST, transport=cluster.transport(), sleep=fake_time.sleep)
    with pytest.raises(ratequeue.Unauthorized) as ei:
        c.acquire_lease("gpt")
    assert ei.value.status == 401
    assert "authorization" not in cluster.seen[0].headers


def test_followers_pointing_at_a_dead_leader_back_off_until_the_election(
    cluster: FakeCluster, fake_time: FakeTime
) -> None:
    """Right after a leader dies, followers still redirect to it: the client must back off
    (not spin through its attempts) until a new leader is elected."""
    dead = "http://n1:7700"
    refusals = {"n": 0}

    def leader_dead(seen: Seen) -> Optional[Response]:
        if seen.node == dead:
            refusals["n"] += 1
            if refusals["n"] == 5:
                cluster.leader = "http://n2:7700"  # elected
            raise ConnectError("refused")
        return None

    cluster.hooks.append(leader_dead)
    c = make_client(cluster, fake_time, urls="http://n2:7700,http://n3:7700", attempts_max=10)
    cluster.leader = dead
    with c.acquire("gpt") as lease:
        pass
    assert lease.released
    assert len(fake_time.sleeps) >= 4
    assert c.leader == "http://n2:7700"
