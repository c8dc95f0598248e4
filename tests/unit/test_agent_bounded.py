"""The agent's bounded fan-out (agent.gather_bounded): starts and health probes each round
run concurrently, never more than their limit at once, and every one of them runs."""

from __future__ import annotations

import asyncio

from hostplane.local.agent.agent import PROBE_CONCURRENCY, gather_bounded


async def test_every_one_runs_and_never_more_than_the_limit_at_once():
    running, most, done = 0, 0, []

    async def job(i: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        done.append(i)

    await gather_bounded(PROBE_CONCURRENCY, (job(i) for i in range(25)))
    assert sorted(done) == list(range(25))
    assert most == PROBE_CONCURRENCY
