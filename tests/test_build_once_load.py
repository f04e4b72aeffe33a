"""Acceptance of build-once (``DEPLOY_BUILD=local``) under load, on 8 web hosts.

Why a test of its own: build-once changes *where* the slow work happens and *how* the
release reaches the hosts (rsync ``--link-dest`` into a folder next to the live one). On
eight real nginx + php-fpm hosts answering continuous HTTP load, a visitor must see what
the default mode gives (no failed page, no broken stylesheet, nothing stale once the deploy
returned, maintenance only while ``setup:upgrade`` runs) while the web hosts build nothing
and receive only what changed.

The rig is module-scoped (eight hosts take a while to start): both scenarios run on it, one
after the other, each deploying a new release over whatever the previous one left live.
It is created in pytest's main thread, which outlives it (see ``WebHost._spawn``).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import rig as rig_module
from conftest import require_real_hosts
from load import HttpLoad
from rig import Rig, make_rig
from scenario import Shop
from test_under_load import (
    Run,
    assert_maintenance_on_every_host,
    assert_no_broken_static_assets,
    assert_static_version_is_the_deployed_one,
)

pytestmark = [pytest.mark.real_hosts(web=True), pytest.mark.slow]

HOSTS = 8
# FPM workers per host: 8 hosts share the machine's two cores with the load and the deploy.
FPM_WORKERS = 2
# Nothing a web host may run in build-once mode (its command log, during the deploy).
BUILD_COMMANDS = ("setup:di:compile", "setup:static-content:deploy")
# What rsync may send a host for a code-only release, as a share of the release's size.
MAX_SENT_SHARE = 0.10
# Files a code-only release does not change (the label lives in another module).
# The load: one visitor per host, each a page (+ its CSS) then a 20 ms pause. Continuous
# (dozens of pages per host during a 2 s setup:upgrade) yet leaving the two cores to the
# deploy; test_under_load's default (two visitors, 10 ms) on eight hosts starves it.
VISITORS_PER_HOST = 1
PAUSE = 0.02
UNCHANGED = ("vendor/composer/ClassLoader.php", "app/code/Shop/Checkout/Model/Cart.php")


@dataclass
class Fleet:
    """The shop on the 8-host rig, what is live now, and the spy standing in for composer."""

    shop: Shop
    live_label: str
    composer: Path  # DEPLOY_COMPOSER: records where it runs, then runs composer
    composer_log: Path

    @property
    def rig(self) -> Rig:
        return self.shop.rig

    def settings(self) -> dict[str, str]:
        return {"build": "local", "build_dir": str(self.rig.base / "builder"),
                "opcache": "fcgi", "composer": str(self.composer)}


@pytest.fixture(scope="module")
def web_rig8() -> Iterator[Rig]:
    """Eight hosts with sshd, php-fpm (OPcache on, few workers) and nginx, for the module."""
    require_real_hosts(web=True)
    rig = make_rig(HOSTS)
    try:
        workers, rig_module.FPM_WORKERS = rig_module.FPM_WORKERS, FPM_WORKERS
        try:
            rig.start_web()
        finally:
            rig_module.FPM_WORKERS = workers
        yield rig
    finally:
        rig.stop()


def composer_spy(rig: Rig) -> tuple[Path, Path]:
    """A ``DEPLOY_COMPOSER`` that appends the mount namespace and directory it runs in to a
    log, then runs the real composer.

    Why not look at ``vendor/`` inodes: Composer writes its autoload files only when their
    content changes, so a ``composer install`` run on a host inside a hard-linked release
    would leave every inode as it was. The mount namespace cannot lie: each host of the rig
    has its own, the builder (this process's machine) has the test's.
    """
    log = rig.common / "composer-spy.log"
    log.touch()
    log.chmod(0o666)
    spy = rig.common / "composer-spy"
    spy.write_text("#!/bin/sh\n"
                   f"echo \"$(readlink /proc/self/ns/mnt) $PWD\" >> {log}\n"
                   'exec composer "$@"\n')
    spy.chmod(0o755)
    return spy, log


@pytest.fixture(scope="module")
def fleet(web_rig8: Rig) -> Fleet:
    """Release A built once and live on all eight hosts (no load yet)."""
    spy, log = composer_spy(web_rig8)
    fleet = Fleet(Shop(web_rig8, label="A"), "A", spy, log)
    fleet.shop.deploy(**fleet.settings())
    return fleet


def under_load(rig: Rig, action: Callable[[], object], *, after: int = 8) -> Run:
    """test_under_load's ``under_load`` with a lighter load (see VISITORS_PER_HOST): load
    every host, wait until each answered, run ``action``, keep loading until each host
    answered ``after`` more pages."""
    with HttpLoad.on_rig(rig, threads_per_host=VISITORS_PER_HOST, pause=PAUSE) as load:
        load.wait_ok()
        result = action()
        done = time.time()
        load.wait_after(done, count=after)
    return Run(load, done, result)


# --------------------------------------------------------------------------- what to check


def composer_runs(fleet: Fleet) -> list[tuple[str, str]]:
    """(mount namespace, directory) of every composer run so far."""
    lines = fleet.composer_log.read_text().splitlines()
    return [(ns, cwd) for ns, _, cwd in (line.partition(" ") for line in lines)]


def assert_composer_ran_on_the_builder_only(fleet: Fleet, before: int) -> None:
    """Composer ran during the deploy (install + dump-autoload), every time in the
    builder's mount namespace and its build folder: on no web host."""
    runs = composer_runs(fleet)[before:]
    assert len(runs) >= 2, runs
    builder_ns = os.readlink("/proc/self/ns/mnt")
    builder_dir = str(fleet.rig.base / "builder")
    on_hosts = [r for r in runs if r[0] != builder_ns or not r[1].startswith(builder_dir)]
    assert on_hosts == [], f"composer ran outside the builder: {on_hosts}"


def assert_nothing_built_on_hosts(fleet: Fleet, since: float) -> None:
    """No ``setup:di:compile`` / ``setup:static-content:deploy`` in any host's command log
    since ``since``, while the hosts did run commands then (the log is not just empty)."""
    shop = fleet.shop
    for host in fleet.rig.hosts:
        ran = [e["cmd"] for e in shop.log(host) if e["t_start"] >= since and e["cmd"]]
        assert [c for c in ran if c.startswith(BUILD_COMMANDS)] == [], (host.name, ran)
    assert any(e["t_start"] >= since for e in shop.log(fleet.rig.hosts[0])), "empty log"


def release_size(path: Path) -> int:
    """Bytes of the release's own files (shared symlinks are not followed)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            info = os.lstat(os.path.join(root, name))
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def assert_unchanged_files_are_hard_links(fleet: Fleet, old: str, new: str) -> None:
    """Per host, Composer's class loader and an untouched module file of the new release
    are the previous release's inodes: ``--link-dest`` worked, nothing was copied again.
    (Not ``vendor/autoload.php``: without a lock file Composer names its autoloader class
    with a random suffix, so that file differs in every build.)"""
    for host in fleet.rig.hosts:
        for sub in UNCHANGED:
            before = fleet.shop.release_path(host, old, sub).stat()
            after = fleet.shop.release_path(host, new, sub).stat()
            assert (after.st_ino, after.st_nlink > 1) == (before.st_ino, True), (host.name, sub)


def assert_live_after_every_host_received(fleet: Fleet, run: Run, label: str,
                                          release: str) -> None:
    """No host served ``label`` before every host had the release whole: the first answer
    of ``label`` anywhere ended after the last host made the release's shared links (the
    last step of its ship, after the digest check; the link's own mtime, wall clock)."""
    linked = [os.lstat(fleet.shop.release_path(h, release, "app/etc/env.php")).st_mtime
              for h in fleet.rig.hosts]
    new_ends = [s.t_end for s in run.load.samples if s.label == label]
    assert new_ends, run.load.summary()
    assert min(new_ends) > max(linked), (min(new_ends), max(linked))


def assert_every_host_on(fleet: Fleet, run: Run, release: str, label: str) -> None:
    """`current` is ``release`` everywhere and the last page each host served is ``label``."""
    labels = run.load.labels()
    for host in fleet.rig.hosts:
        assert fleet.shop.live(host) == release, host.name
        assert labels[host.name][-1] == label, run.load.summary()


# --------------------------------------------------------------------------- deploys


def test_code_only_release_built_once_under_load(fleet: Fleet) -> None:
    shop, rig, old = fleet.shop, fleet.rig, fleet.live_label
    previous = shop.live(rig.hosts[0])
    assert previous is not None
    shop.commit(label="B")
    composer_before = len(composer_runs(fleet))
    run = under_load(rig, lambda: shop.deploy(**fleet.settings()))
    fleet.live_label = "B"
    load, summary = run.load, run.summary
    assert summary.path == "zero-downtime"
    assert load.failed() == [], load.summary()
    assert load.maintenance() == [], load.summary()
    assert_no_broken_static_assets(run, rig, "B")
    assert_static_version_is_the_deployed_one(shop, run)
    assert load.stale_after(run.done, old) == [], load.summary()
    assert_every_host_on(fleet, run, summary.release, "B")
    assert_live_after_every_host_received(fleet, run, "B", summary.release)

    assert summary.built_once_seconds is not None
    assert_composer_ran_on_the_builder_only(fleet, composer_before)
    assert load.started_at is not None
    assert_nothing_built_on_hosts(fleet, load.started_at)
    assert_unchanged_files_are_hard_links(fleet, previous, summary.release)
    sizes = {}
    for host in rig.hosts:
        size = release_size(shop.release_path(host, summary.release))
        sent = summary.sent_bytes[host.name]
        sizes[host.name] = (sent, size)
        assert 0 < sent < MAX_SENT_SHARE * size, (host.name, sent, size)
    print(f"sent/release bytes per host: {sizes}")


def test_schema_release_built_once_under_load(fleet: Fleet) -> None:
    shop, rig, old = fleet.shop, fleet.rig, fleet.live_label
    shop.commit(label="C", modules={"Shop_Catalog": "1.1.0"})
    primary = rig.hosts[0]
    shop.faults(primary, {"setup:upgrade": {"sleep": 2.0}})
    composer_before = len(composer_runs(fleet))
    try:
        run = under_load(rig, lambda: shop.deploy(**fleet.settings()))
    finally:
        shop.faults(primary, {})
    fleet.live_label = "C"
    load, summary = run.load, run.summary
    assert summary.path == "maintenance"
    assert_maintenance_on_every_host(shop, run)
    assert load.failed() == [], load.summary()
    assert_no_broken_static_assets(run, rig, "C")
    assert_static_version_is_the_deployed_one(shop, run)
    assert load.stale_after(run.done, old) == [], load.summary()
    assert_every_host_on(fleet, run, summary.release, "C")
    assert_live_after_every_host_received(fleet, run, "C", summary.release)
    assert load.started_at is not None
    upgrades = [h.name for h in rig.hosts for e in shop.log(h)
                if e["cmd"] == "setup:upgrade" and e["t_start"] >= load.started_at]
    assert upgrades == [primary.name]
    assert_composer_ran_on_the_builder_only(fleet, composer_before)
    assert_nothing_built_on_hosts(fleet, load.started_at)
