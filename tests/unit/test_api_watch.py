"""The status long-poll (services.api.watch) on its own: an answer at once when the
document already moved, at the notice when it moves, at the deadline when it does not,
and by re-reading when no notice comes."""

from __future__ import annotations

import asyncio
import time

from services.api import watch as watch_module
from services.api.watch import StatusWatch


class Doc:
    def __init__(self, at: str) -> None:
        self.at, self.reads = at, 0

    async def read(self) -> dict:
        self.reads += 1
        return {"name": "acme", "updated_at": self.at}


async def test_a_document_that_already_moved_is_answered_at_once():
    doc = Doc("t2")
    assert (await StatusWatch(None).changed("acme", "t1", 10, doc.read))["updated_at"] == "t2"
    assert doc.reads == 1


async def test_the_notice_of_a_change_answers_the_waiting_request():
    watch, doc = StatusWatch(None), Doc("t1")

    async def change_later() -> None:
        await asyncio.sleep(0.2)
        doc.at = "t2"
        watch._notified(None, 0, watch_module.CHANNEL, "other")  # another tenant's notice wakes nobody here
        watch._notified(None, 0, watch_module.CHANNEL, "acme")

    t0 = time.monotonic()
    answer, _ = await asyncio.gather(watch.changed("acme", "t1", 10, doc.read), change_later())
    assert answer["updated_at"] == "t2" and time.monotonic() - t0 < 1.0, "not the 2 s re-read"
    assert watch.waiting == {}, "nothing left registered"


async def test_no_change_is_answered_with_the_same_document_at_the_deadline():
    doc = Doc("t1")
    t0 = time.monotonic()
    answer = await StatusWatch(None).changed("acme", "t1", 0.3, doc.read)
    assert answer["updated_at"] == "t1" and 0.25 < time.monotonic() - t0 < 1.0


async def test_without_a_notice_the_change_is_found_by_reading_again(monkeypatch):
    monkeypatch.setattr(watch_module, "RECHECK_S", 0.1)
    doc = Doc("t1")

    async def change_quietly() -> None:
        await asyncio.sleep(0.25)
        doc.at = "t2"

    answer, _ = await asyncio.gather(StatusWatch(None).changed("acme", "t1", 5, doc.read), change_quietly())
    assert answer["updated_at"] == "t2" and doc.reads >= 3


async def test_a_wait_longer_than_the_cap_is_capped(monkeypatch):
    monkeypatch.setattr(watch_module, "MAX_WAIT_S", 0.2)
    t0 = time.monotonic()
    await StatusWatch(None).changed("acme", "t1", 3600, Doc("t1").read)
    assert time.monotonic() - t0 < 1.0
