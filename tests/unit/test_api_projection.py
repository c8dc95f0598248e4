"""The status state machine: stages in order, and no order or repetition of events ever
moves a tenant backwards or changes where it ends."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

import pytest

from contracts import (
    AppUpdateRequested,
    BuildFailed,
    DeprovisioningFailed,
    MigrationFailed,
    MigrationsApplied,
    ProvisioningFailed,
    ReleaseActivated,
    ReleaseFailed,
    RouteConfigured,
    RouteRemoved,
    TenantChanged,
    TenantDeletionRequested,
    TenantDeprovisioned,
    TenantProvisioned,
    TenantRequested,
    registered_events,
)
from contracts.envelope import Event
from services.api.handlers import HANDLERS
from contracts.tenant import RANK
from services.api.projection import Facts, Observed, Status, begin, derive, observe
from tests.support.events import sample

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def ev(model: type[Event], generation: int | None = 1, **update) -> Observed:
    data = sample(model).model_copy(update=update)
    return Observed(model.event_type, data.model_dump(mode="json"), generation, NOW)


def fold(status: Status, events: list[Observed]) -> list[Status]:
    seen = [status]
    for e in events:
        seen.append(observe(seen[-1], e))
    return seen


def created(gen: int = 1) -> Status:
    return begin(None, "acme", gen, "create")


CREATE_EVENTS = [
    ev(TenantRequested),
    ev(TenantProvisioned),
    ev(RouteConfigured),
    ev(TenantChanged, version=1),
    ev(MigrationsApplied, version=1),
    ev(ReleaseActivated, version=1),
]


def test_create_walks_the_stages_in_order():
    states = [(s.state, s.stage) for s in fold(created(), CREATE_EVENTS)]
    assert states == [
        ("requested", "queued"),
        ("provisioning", "provision"),
        ("provisioning", "route"),
        ("building", "build"),
        ("migrating", "migrate"),
        ("migrating", "release"),
        ("ready", None),
    ]


def test_without_builder_a_tenant_waits_honestly_at_building():
    final = fold(created(), CREATE_EVENTS[:3])[-1]
    assert (final.state, final.stage, final.version) == ("building", "build", None)
    assert not final.settled


def _ranks(history: list[Status]) -> list[int]:
    return [RANK[s.state] for s in history]


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(CREATE_EVENTS)))),
                         ids=lambda o: "".join(map(str, o)))
def test_any_order_never_moves_backwards_and_ends_ready(order):
    history = fold(created(), [CREATE_EVENTS[i] for i in order])
    ranks = _ranks(history)
    assert ranks == sorted(ranks), [s.state for s in history]
    assert history[-1].state == "ready" and history[-1].version == 1


def test_duplicates_and_replays_in_random_order_change_nothing():
    rng = random.Random(7)
    for _ in range(300):
        events = CREATE_EVENTS + rng.choices(CREATE_EVENTS, k=rng.randint(1, 8))
        rng.shuffle(events)
        history = fold(created(), events)
        assert _ranks(history) == sorted(_ranks(history))
        assert history[-1] == fold(created(), CREATE_EVENTS)[-1]


@pytest.mark.parametrize("event", CREATE_EVENTS + [ev(BuildFailed), ev(ProvisioningFailed), ev(RouteRemoved)],
                         ids=lambda e: e.event_type)
def test_observing_an_event_twice_equals_once(event):
    for start in fold(created(), CREATE_EVENTS):
        once = observe(start, event)
        assert observe(once, event) == once


def test_failure_names_its_stage_and_error():
    s = fold(created(), [ev(TenantRequested), ev(TenantProvisioned),
                         ev(BuildFailed, stage="codegen", error="entity x: bad", retryable=False)])[-1]
    assert (s.state, s.stage) == ("failed", "building")
    assert (s.facts.failure.step, s.facts.failure.error, s.facts.failure.retryable) == ("codegen", "entity x: bad", False)
    assert s.settled


def test_a_retried_step_that_succeeds_supersedes_its_failure_in_either_order():
    fail, ok = ev(ProvisioningFailed, retryable=True), ev(TenantProvisioned)
    for events in ([fail, ok], [ok, fail]):
        s = fold(created(), [ev(TenantRequested), *events])[-1]
        assert (s.state, s.stage) == ("provisioning", "route"), events


def test_migration_failure_of_a_version_is_superseded_only_by_that_version_applied():
    base = [ev(TenantRequested), ev(TenantProvisioned), ev(RouteConfigured), ev(TenantChanged, version=2)]
    failed = fold(created(), [*base, ev(MigrationFailed, version=2), ev(MigrationsApplied, version=1)])[-1]
    assert failed.state == "failed" and failed.stage == "migrating"
    assert observe(failed, ev(MigrationsApplied, version=2)).state == "migrating"  # on to release


def ready(gen: int = 1) -> Status:
    return fold(created(gen), [Observed(e.event_type, e.data, gen, NOW) for e in CREATE_EVENTS])[-1]


def test_update_goes_updating_then_ready_with_the_new_version():
    s = begin(ready(), "acme", 2, "update")
    assert (s.state, s.stage, s.version) == ("updating", "build", 1), "the old version keeps serving"
    steps = [ev(AppUpdateRequested, 2), ev(TenantChanged, 2, version=2), ev(MigrationsApplied, 2, version=2),
             ev(ReleaseActivated, 2, version=2)]
    history = fold(s, steps)
    assert [(h.state, h.stage) for h in history] == [
        ("updating", "build"), ("updating", "build"), ("updating", "migrate"), ("updating", "release"),
        ("ready", None)]
    assert history[-1].version == 2


def test_an_older_requests_late_events_do_not_touch_the_current_one():
    s = begin(ready(), "acme", 2, "update")
    late = [ev(TenantChanged, 1, version=1), ev(BuildFailed, 1), ev(MigrationFailed, 1, version=1),
            ev(ReleaseActivated, 1, version=1)]
    after = fold(s, late)[-1]
    assert (after.state, after.stage, after.version) == ("updating", "build", 1)
    assert after.facts.failure is None


def test_update_events_in_any_order_end_ready():
    start = begin(ready(), "acme", 2, "update")
    steps = [ev(TenantChanged, 2, version=2), ev(MigrationsApplied, 2, version=2), ev(ReleaseActivated, 2, version=2)]
    for order in itertools.permutations(steps):
        history = fold(start, list(order))
        assert _ranks(history) == sorted(_ranks(history))
        assert history[-1].state == "ready" and history[-1].version == 2


def test_an_event_without_a_known_request_counts_for_the_current_one():
    s = begin(ready(), "acme", 2, "update")
    s = fold(s, [ev(TenantChanged, 2, version=2), ev(MigrationsApplied, 2, version=2),
                 ev(ReleaseFailed, None, version=2, reason="health_check", stage="health_check")])[-1]
    assert (s.state, s.stage) == ("failed", "releasing")


def test_nothing_older_than_a_deletion_resurrects_the_tenant():
    s = begin(ready(), "acme", 2, "delete")
    assert (s.state, s.stage) == ("deleting", "deprovision")
    late = [ev(TenantRequested, 1), ev(TenantProvisioned, 1), ev(RouteConfigured, 1),
            ev(ReleaseActivated, 1, version=3), ev(BuildFailed, 1)]
    assert fold(s, late)[-1] == s
    gone = fold(s, [ev(TenantDeletionRequested, 2), ev(RouteRemoved, 2), ev(TenantDeprovisioned, 2)])[-1]
    assert gone.state == "deleted" and gone.settled
    assert fold(gone, late + [ev(ProvisioningFailed, None)])[-1].state == "deleted"


def test_deletion_can_fail_then_succeed_on_retry():
    s = begin(ready(), "acme", 2, "delete")
    failed = observe(s, ev(DeprovisioningFailed, 2, stage="database", error="in use"))
    assert (failed.state, failed.stage) == ("failed", "deprovisioning")
    retry = begin(failed, "acme", 3, "delete")
    assert retry.state == "deleting"
    assert observe(retry, ev(DeprovisioningFailed, 2)).state == "deleting", "the old attempt's failure is history"
    assert observe(retry, ev(TenantDeprovisioned, 3)).state == "deleted"


def test_failures_of_another_kind_of_request_do_not_count():
    deleting = begin(ready(), "acme", 2, "delete")
    assert observe(deleting, ev(ReleaseFailed, None)).state == "deleting"
    assert observe(ready(), ev(DeprovisioningFailed, 1)).state == "ready"


def test_a_recreated_tenant_ignores_its_previous_life():
    gone = fold(begin(ready(), "acme", 2, "delete"), [ev(TenantDeprovisioned, 2)])[-1]
    again = begin(gone, "acme", 3, "create")
    assert (again.state, again.lifetime, again.facts) == ("requested", 3, Facts())
    old = [ev(TenantProvisioned, 1), ev(ReleaseActivated, 1, version=1), ev(TenantDeprovisioned, 2)]
    assert fold(again, old)[-1] == again
    assert observe(again, ev(TenantProvisioned, 3)).state == "provisioning"


def test_facts_survive_their_json_form():
    s = fold(created(), [*CREATE_EVENTS[:4], ev(MigrationFailed, version=1)])[-1]
    assert Facts.from_json(s.facts.to_json()) == s.facts
    assert Facts.from_json({**s.facts.to_json(), "added_later": 1}) == s.facts, "tolerates newer fields"


def test_derive_covers_every_kind():
    assert derive("create", Facts()) == ("requested", "queued")
    assert derive("update", Facts()) == ("updating", "build")
    assert derive("delete", Facts()) == ("deleting", "deprovision")


def test_the_consumer_handles_every_event_type():
    assert {m.event_type for m in HANDLERS} == {m.event_type for m in registered_events()}


def test_a_dead_lettered_message_fails_its_stage_until_a_redrive_succeeds():
    from contracts.failures_v1 import MessageDeadLettered

    status = fold(created(), [ev(TenantRequested), ev(MessageDeadLettered)])[-1]
    assert (status.state, status.stage) == ("failed", "provisioning")
    assert status.facts.failure.retryable and "provisioner" in status.facts.failure.step
    redriven = fold(status, [ev(TenantProvisioned)])[-1]
    assert (redriven.state, redriven.stage) == ("provisioning", "route")


def test_a_dead_lettered_route_fails_routing_and_the_route_supersedes_it():
    from contracts.failures_v1 import MessageDeadLettered

    stuck = fold(created(), [ev(TenantRequested), ev(TenantProvisioned),
                             ev(MessageDeadLettered, service="router-config", stage="routing")])[-1]
    assert (stuck.state, stuck.stage) == ("failed", "routing")
    assert fold(stuck, [ev(RouteConfigured)])[-1].state != "failed"


# --- domain changes: a request whose pipeline is just the route -------------------------------

def test_a_domain_change_is_updating_at_route_until_its_own_route_configured():
    from contracts.events_v1 import DomainChangeRequested

    s = begin(ready(), "acme", 2, "domain")
    assert (s.state, s.stage, s.version) == ("updating", "route", 1), "the tenant keeps serving"
    old_route = fold(s, [ev(RouteConfigured, 1)])[-1]  # the create's route, late: not this request's
    assert (old_route.state, old_route.stage) == ("updating", "route")
    history = fold(s, [ev(DomainChangeRequested, 2), ev(RouteConfigured, 2)])
    assert [(h.state, h.stage) for h in history] == [("updating", "route"), ("updating", "route"), ("ready", None)]
    assert history[-1].version == 1 and history[-1].settled


def test_domain_change_events_in_any_order_or_twice_end_ready():
    from contracts.events_v1 import DomainChangeRequested

    start = begin(ready(), "acme", 2, "domain")
    steps = [ev(DomainChangeRequested, 2), ev(RouteConfigured, 2), ev(RouteConfigured, 2)]
    for order in itertools.permutations(steps):
        history = fold(start, list(order))
        assert _ranks(history) == sorted(_ranks(history))
        assert history[-1].state == "ready"


def test_a_dead_lettered_domain_change_fails_routing_until_its_route_arrives():
    from contracts.failures_v1 import MessageDeadLettered

    s = begin(ready(), "acme", 2, "domain")
    stuck = fold(s, [ev(MessageDeadLettered, 2, service="router-config", stage="routing")])[-1]
    assert (stuck.state, stuck.stage) == ("failed", "routing"), "an earlier route does not supersede it"
    assert fold(stuck, [ev(RouteConfigured, 2)])[-1].state == "ready"


def test_a_route_failed_domain_change_shows_why_and_the_tenant_keeps_its_version():
    from contracts.failures_v1 import RouteFailed

    s = begin(ready(), "acme", 2, "domain")
    failed = fold(s, [ev(RouteFailed, 2)])[-1]
    assert (failed.state, failed.stage, failed.version) == ("failed", "routing", 1)
    assert failed.facts.failure.step == "hosts" and "already routed" in failed.facts.failure.error
    assert not failed.facts.failure.retryable
    assert fold(failed, [ev(RouteConfigured, 2)])[-1].state == "ready", "its own route supersedes it"
    assert fold(s, [ev(RouteFailed, 1)])[-1].state == "updating", "another request's failure does not count"


def test_a_later_update_starts_without_the_domain_changes_route_fact():
    s = fold(begin(ready(), "acme", 2, "domain"), [ev(RouteConfigured, 2)])[-1]
    update = begin(s, "acme", 3, "update")
    assert not update.facts.route_current and update.facts.routed
    assert derive("domain", Facts()) == ("updating", "route")


# --- rollback: a new release copying an old one; versions never go backwards -------------


def _rolled_back_to_1() -> Status:
    """v1 → v2 live, then a rollback (generation 3) of v1 as new version 3."""
    v2 = fold(begin(ready(), "acme", 2, "update"), [
        ev(TenantChanged, 2, version=2), ev(MigrationsApplied, 2, version=2), ev(ReleaseActivated, 2, version=2)])[-1]
    return begin(v2, "acme", 3, "rollback")


def test_a_rollback_walks_build_migrate_release_and_ends_on_the_new_version():
    from contracts.events_v1 import RollbackRequested
    s = _rolled_back_to_1()
    assert (s.state, s.stage, s.version) == ("updating", "build", 2), "the live release keeps serving"
    steps = [ev(RollbackRequested, 3), ev(TenantChanged, 3, version=3, rollback_of=1),
             ev(MigrationsApplied, 3, version=3), ev(ReleaseActivated, 3, version=3)]
    history = fold(s, steps)
    assert [(h.state, h.stage) for h in history] == [
        ("updating", "build"), ("updating", "build"), ("updating", "migrate"), ("updating", "release"),
        ("ready", None)]
    assert history[1].facts.published
    assert [h.version for h in history] == [2, 2, 2, 2, 3]


def test_rollback_events_in_any_order_or_with_old_replays_never_move_backwards():
    start = _rolled_back_to_1()
    steps = [ev(TenantChanged, 3, version=3, rollback_of=1), ev(MigrationsApplied, 3, version=3),
             ev(ReleaseActivated, 3, version=3),
             ev(ReleaseActivated, 1, version=1), ev(MigrationsApplied, 1, version=1)]  # v1's old events replayed
    for order in itertools.permutations(steps):
        history = fold(start, list(order))
        assert _ranks(history) == sorted(_ranks(history))
        versions = [h.version for h in history]
        assert versions == sorted(versions) and versions[-1] == 3
        assert history[-1].state == "ready"


def test_a_refused_rollback_at_the_migrator_fails_migrating_and_keeps_the_live_version():
    s = fold(_rolled_back_to_1(), [ev(TenantChanged, 3, version=3, rollback_of=1),
                                   ev(MigrationFailed, 3, stage="rollback", version=3)])[-1]
    assert (s.state, s.stage, s.version) == ("failed", "migrating", 2)
    assert derive("rollback", Facts()) == ("updating", "build")


def test_a_pending_domain_and_its_dns_records_show_until_a_route_serves_it():
    records = [{"name": "_a1.shop.example.com.", "type": "CNAME", "value": "_b2.acm-validations.aws."},
               {"name": "shop.example.com", "type": "CNAME", "value": "d1.cloudfront.net"}]
    from contracts.events_v1 import DnsRecord

    pending = ev(RouteConfigured, pending_domain="shop.example.com", dns_records=[DnsRecord(**r) for r in records])
    status = observe(observe(created(), ev(TenantProvisioned)), pending)
    assert (status.facts.pending_domain, status.facts.dns_records) == ("shop.example.com", records)
    assert Facts.from_json(status.facts.to_json()) == status.facts  # stored as JSON and read back
    served = observe(status, ev(RouteConfigured, dns_records=[DnsRecord(**records[1])]))
    assert served.facts.pending_domain is None and served.facts.dns_records == records[1:]
    older = observe(begin(served, "acme", 2, "domain"), ev(RouteConfigured, generation=1, pending_domain="x.example.com"))
    assert older.facts.pending_domain is None  # an older request's route does not bring it back


# --- idle-period changes: a request whose pipeline is just the runtime's registration -------------

def test_an_idle_change_is_updating_at_settings_until_its_own_fact():
    from contracts.events_v1 import IdleAfterChanged, IdleAfterChangeRequested

    s = begin(ready(), "acme", 2, "idle")
    assert (s.state, s.stage, s.version) == ("updating", "settings", 1), "the tenant keeps serving"
    assert fold(s, [ev(IdleAfterChanged, 1)])[-1].stage == "settings", "an older change's fact does not end it"
    history = fold(s, [ev(IdleAfterChangeRequested, 2), ev(IdleAfterChanged, 2)])
    assert [(h.state, h.stage) for h in history] == [("updating", "settings"), ("updating", "settings"),
                                                    ("ready", None)]
    assert history[-1].version == 1 and history[-1].settled


def test_idle_change_events_in_any_order_or_twice_end_ready():
    from contracts.events_v1 import IdleAfterChanged, IdleAfterChangeRequested

    start = begin(ready(), "acme", 2, "idle")
    steps = [ev(IdleAfterChangeRequested, 2), ev(IdleAfterChanged, 2), ev(IdleAfterChanged, 2)]
    for order in itertools.permutations(steps):
        history = fold(start, list(order))
        assert _ranks(history) == sorted(_ranks(history))
        assert history[-1].state == "ready"


def test_a_failed_idle_change_shows_why_until_its_own_fact_and_a_provisioned_tenant_does_not_hide_it():
    from contracts.events_v1 import IdleAfterChanged

    s = begin(ready(), "acme", 2, "idle")
    assert s.facts.provisioned, "the tenant was provisioned long ago"
    failed = fold(s, [ev(ProvisioningFailed, 2, stage="runtime", error="tenant 'acme' has no registered runtime",
                         retryable=False)])[-1]
    assert (failed.state, failed.stage, failed.version) == ("failed", "provisioning", 1)
    assert failed.facts.failure.step == "runtime"
    assert fold(s, [ev(ProvisioningFailed, 1)])[-1].state == "updating", "another request's failure does not count"
    assert fold(failed, [ev(IdleAfterChanged, 2)])[-1].state == "ready", "its own fact supersedes it"


def test_a_later_request_starts_without_the_idle_changes_fact_and_a_replayed_one_changes_nothing():
    from contracts.events_v1 import IdleAfterChanged

    s = fold(begin(ready(), "acme", 2, "idle"), [ev(IdleAfterChanged, 2)])[-1]
    update = begin(s, "acme", 3, "update")
    assert not update.facts.idle_current and update.facts.provisioned
    assert fold(update, [ev(IdleAfterChanged, 2)])[-1] == update, "the old change's fact, replayed: no change"
    again = begin(update, "acme", 4, "idle")
    assert fold(again, [ev(IdleAfterChanged, 2)])[-1].stage == "settings", "nor does it end a newer change"
    assert derive("idle", Facts()) == ("updating", "settings")
