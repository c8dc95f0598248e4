"""The test session's shared platforms, and how the suite is split across pytest-xdist workers.

`running_platform` is one real platform per emulator (moto, LocalStack), started once per
session: tests whose outcome depends on the emulator take both, the rest ask for moto only
(`parametrize("running_platform", ["moto"], indirect=True)`). Those tests, and the fixtures
built on it, live in tests/integration/shared/; every other integration or end-to-end module
starts the platform it needs itself (it stops, kills or reconfigures parts of it).

`make test` runs on several workers. A session or module fixture is shared only by tests on
the same worker, so the suite is scheduled in groups: tests/integration/shared/ is one group
(each emulator's platform starts once in the run), every other module is a group of its own
(a module's platform starts once). xdist's own `--dist loadgroup` cannot do this under
pytest 9 (it renames node ids, which pytest 9 no longer lets it do: pytest-xdist#1386), so
the grouping is a scheduler of our own over node ids.
"""

from __future__ import annotations

import pytest

from hostplane.local.ephemeral import RunningPlatform, start_platform, stop_platform

EMULATORS = ["moto", "localstack"]
SHARED = "tests/integration/shared/"


@pytest.fixture(scope="session", params=EMULATORS)
def running_platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp(f"hostplane-{request.param}")
    running: RunningPlatform = start_platform(home, request.param)
    try:
        yield running
    finally:
        stop_platform(running)


def schedule_group(nodeid: str) -> str:
    """The scheduling group of a test: the shared platforms' folder, or its own module."""
    path = nodeid.split("::", 1)[0]
    return SHARED if path.startswith(SHARED) else path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test outside the shared folder that takes the shared platform would start another
    copy of it on its own worker: refuse to collect it."""
    strays = sorted({item.nodeid.split("::", 1)[0] for item in items
                     if "running_platform" in getattr(item, "fixturenames", ())
                     and schedule_group(item.nodeid) != SHARED})
    if strays:
        raise pytest.UsageError(f"{', '.join(strays)}: tests on the shared platform (running_platform) "
                                f"belong in {SHARED}")


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByPlatform(LoadScopeScheduling):
        """Whole groups (schedule_group) to one worker each, in collection order: end-to-end
        modules, the slowest, start first (xdist's default order, most tests first, would
        start the many quick unit modules first and the long ones last)."""

        def _split_scope(self, nodeid: str) -> str:
            return schedule_group(nodeid)

    config.option.loadscopereorder = False
    return ByPlatform(config, log)
