"""Fixtures for tests on real hosts (see ``tests/rig.py``), and CI's "no silent skip" rule.

Why the rule: the tests that matter here need root, sshd, php-fpm and nginx. On a laptop
without them they skip with the precise reason; under ``CI=true`` a missing tool is a
broken CI setup, so the same check fails the test, and a run in which no test passed
fails as a whole. CI must never be green because everything was skipped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rig import IN_CI, Rig, make_rig, missing_requirements, skip_or_fail  # noqa: E402

_passed = 0
WORKERS_PER_CPU = 1
#: Modules that each keep three hosts busy with visitors (:class:`load.HttpLoad`): two of
#: them side by side starved both, so one worker runs them one after the other.
HTTP_LOAD = ("test_faults.py", "test_under_load.py", "test_build_once_load.py")


def require_real_hosts(*, web: bool = False) -> None:
    """Skip (or under ``CI=true`` fail) unless this machine can run a rig.

    ``web=True`` also requires php-fpm 8.2 and nginx.
    """
    reasons = missing_requirements(web=web)
    if not reasons:
        return
    skip_or_fail("real-host rig unavailable: " + "; ".join(reasons))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "real_hosts(web=False): needs root + sshd (+ php-fpm/nginx with web=True); "
        "skipped without them, failed under CI=true",
    )
    config.addinivalue_line(
        "markers",
        "slow: a module of multi-host deploys under load, faults or long windows; "
        "`-m 'not slow'` is the fast subset (tests/README.md)",
    )


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: WORKERS_PER_CPU workers per CPU. Measured on 2 cores (full suite, the
    HTTP-load modules as one unit): 2 workers 11.1-11.9 min with the CPUs about 90 % busy,
    3 workers 10.7 min at 97 %. The suite is CPU-bound; a third worker only queues, and
    leaves the tests under HTTP load less margin on a busier machine."""
    return max(1, (os.cpu_count() or 1) * WORKERS_PER_CPU)


def scope_of(nodeid: str) -> str:
    """The unit of work one xdist worker takes whole: the test's module (its module-scoped
    rig is made once), or ``http_load`` for every module in :data:`HTTP_LOAD`."""
    module = nodeid.split("::", 1)[0]
    return "http_load" if Path(module).name in HTTP_LOAD else module


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``-n``: whole modules per worker, the :data:`HTTP_LOAD` modules as one unit, in
    the order of collection (see ``pytest_collection_modifyitems``). An explicit
    ``--dist`` other than ``load`` is left to xdist.

    Why not xdist's ``--dist loadgroup``: it marks a group by rewriting ``item._nodeid``,
    which pytest 9.2 no longer reads; the groups silently fell apart, and two fleets
    under HTTP load ran side by side (test_faults: 136 s alone, 710 s in the suite)."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    config.option.loadscopereorder = False
    return ModuleScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The :data:`HTTP_LOAD` modules first, then the other slow ones (a stable sort): the
    workers start on the longest units, and the short ones fill in at the end instead of
    one worker finishing a slow module alone."""
    def rank(item: pytest.Item) -> int:
        if scope_of(item.nodeid) == "http_load":
            return 0
        return 1 if item.get_closest_marker("slow") is not None else 2

    items.sort(key=rank)


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("real_hosts")
    if marker is not None:
        require_real_hosts(web=bool(marker.kwargs.get("web", False)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    global _passed
    if report.when == "call" and report.passed:
        _passed += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under ``CI=true`` a run that collected tests but passed none is a failure. Decided
    where every report arrives: the only process, or xdist's controller (a worker may
    well have been given only skipped tests)."""
    if hasattr(session.config, "workerinput"):
        return
    if IN_CI and session.testscollected and _passed == 0 and exitstatus == 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                "CI=true: no test passed (all skipped?) - failing the run", red=True
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _rig(n_hosts: int, *, web: bool) -> Iterator[Rig]:
    require_real_hosts(web=web)
    rig = make_rig(n_hosts)
    try:
        if web:
            rig.start_web()
        yield rig
    finally:
        rig.stop()


@pytest.fixture
def rig1() -> Iterator[Rig]:
    """One host ``web1`` with sshd (no web server)."""
    yield from _rig(1, web=False)


@pytest.fixture
def rig3() -> Iterator[Rig]:
    """Three hosts ``web1``..``web3`` with sshd (no web server)."""
    yield from _rig(3, web=False)


@pytest.fixture
def web_rig1() -> Iterator[Rig]:
    """One host with sshd, php-fpm (OPcache on) and nginx."""
    yield from _rig(1, web=True)


@pytest.fixture
def web_rig3() -> Iterator[Rig]:
    """Three hosts with sshd, php-fpm (OPcache on) and nginx."""
    yield from _rig(3, web=True)
