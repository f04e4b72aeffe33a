"""Rollback (also after a rollback: rejected and failed releases are never a target), the
deploy lock under two concurrent deploys, and Ctrl-C during a build."""

from __future__ import annotations

import json
import signal
import urllib.request

import pytest
from rig import Rig
from scenario import (
    Gate,
    Shop,
    eventually,
    running,
    stop_with,
)
from shop import page_fields

from fabric_magento_deploy.deploy import DeployError
from fabric_magento_deploy.release import ReleaseRecord, Releases
from fabric_magento_deploy.rollback import RollbackRefused, plan, rollback_target

pytestmark = [pytest.mark.real_hosts, pytest.mark.slow]

# Fatal only for a web request (every build step loads the file from the CLI and passes):
# the post-switch health check sees 500 and reverts the release (as in test_revert.py).
BROKEN_LABEL = ("<?php\nreturn PHP_SAPI === 'cli' ? 'label'"
                " : \\Shop\\Catalog\\render_label();\n")
LABEL = "app/code/Shop/Catalog/Label.php"


@pytest.fixture
def one(rig1):
    return Shop(rig1)


@pytest.fixture
def fleet(rig3):
    return Shop(rig3)


def record(host, release: str) -> dict:
    return json.loads(host.inside(f"/srv/shop/history/{release}.json").read_text())


def status(shop: Shop, host, release: str) -> str:
    return record(host, release)["status"]


def label(host) -> str:
    """The release label a customer sees: the storefront through the host's nginx."""
    with urllib.request.urlopen(host.url("/"), timeout=10) as page:
        return page_fields(page.read().decode())["label"]


def row(listing: str, release: str) -> str:
    """The line of ``fab releases`` for ``release``."""
    lines = [line for line in listing.splitlines() if release in line.split()]
    assert len(lines) == 1, listing
    return lines[0]


def test_rollback_after_code_only_release(one: Shop) -> None:
    web1 = one.rig.host("web1")
    a = one.deploy().release
    one.commit(label="B")
    b = one.deploy().release
    result = one.fab("rollback")
    assert result.returncode == 0, result.stdout + result.stderr
    assert one.live(web1) == a
    assert f"rollback: release {a}" in result.stdout
    listing = one.fab("releases").stdout
    assert a in listing and b in listing


def test_rollback_across_schema_change_is_refused_then_forced(one: Shop) -> None:
    web1 = one.rig.host("web1")
    a = one.deploy().release
    one.commit(modules={"Shop_Catalog": "1.1.0"})
    c = one.deploy().release
    refused = one.fab("rollback")
    assert refused.returncode == 1
    assert c in refused.stderr and "changed the database" in refused.stderr
    assert one.live(web1) == c
    assert "CHANGED" in one.fab("releases").stdout
    forced = one.fab("rollback", "--force")
    assert forced.returncode == 0, forced.stderr
    assert one.live(web1) == a
    assert "DATABASE WAS NOT" in forced.stdout


def test_rollback_never_targets_a_failed_release(one: Shop) -> None:
    web1 = one.rig.host("web1")
    a = one.deploy().release
    one.commit(label="B")
    one.deploy()
    one.faults(web1, {"setup:di:compile": {"exit": 1, "message": "boom"}})
    one.commit(label="C")
    assert one.fab("deploy").returncode == 1
    assert one.fab("rollback").returncode == 0
    assert one.live(web1) == a


def test_two_concurrent_deploys_exactly_one_proceeds(one: Shop) -> None:
    web1 = one.rig.host("web1")
    gate = Gate(one.rig, held=["web1"])  # the winner waits at composer install, lock held
    procs = [one.fab_background("deploy", "--quiet", composer=gate.command) for _ in range(2)]
    try:
        loser = eventually(lambda: next((p for p in procs if p.poll() is not None), None),
                           "one of the two deploys gave up")
        eventually(lambda: gate.waiting(web1), "the other deploy building")
        loser_out = loser.communicate(timeout=30)[0]
        assert loser.returncode == 1, loser_out
        assert "deploy.lock is held by" in loser_out
    finally:
        gate.open()
    winner = next(p for p in procs if p is not loser)
    winner_out = winner.communicate(timeout=120)[0]
    assert winner.returncode == 0, winner_out
    assert len(one.releases(web1)) == 1
    assert not one.lock_exists(web1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_during_build_leaves_current_and_no_lock(one: Shop, sig: int) -> None:
    web1 = one.rig.host("web1")
    live = one.deploy().release
    one.commit(label="B")
    one.faults(web1, {"setup:di:compile": {"sleep": 30.0}})
    proc = one.fab_background("deploy")
    try:
        eventually(lambda: len(one.releases(web1)) == 2 and running(web1, "setup:di:compile"),
                   "the build in di:compile")
    except AssertionError:
        proc.kill()
        raise
    out = stop_with(proc, sig)
    assert proc.returncode != 0, out
    assert one.live(web1) == live
    assert one.releases(web1) == [live]
    assert not one.lock_exists(web1)
    eventually(lambda: not running(web1, "setup:di:compile"),
               "the interrupted build stopped on the host")


def test_rollback_moves_every_host_and_to_names_the_release(fleet: Shop) -> None:
    a = fleet.deploy().release
    fleet.commit(label="B")
    b = fleet.deploy().release
    fleet.commit(label="C")
    c = fleet.deploy().release
    back = fleet.fab("rollback")  # DEPLOY_HOSTS: web1, web2, web3
    assert back.returncode == 0, back.stdout + back.stderr
    assert f"rollback: release {b} is live on web1, web2, web3" in back.stdout
    for host in fleet.rig.hosts:
        assert fleet.live(host) == b, host.name
        assert (status(fleet, host, b), status(fleet, host, c)) == ("live", "rejected")
    to = fleet.fab("rollback", f"--to={a}")
    assert to.returncode == 0, to.stdout + to.stderr
    for host in fleet.rig.hosts:
        assert fleet.live(host) == a, host.name
        assert (status(fleet, host, a), status(fleet, host, b)) == ("live", "rejected")
        assert record(host, b)["rejected_at"] == record(fleet.rig.hosts[0], b)["rejected_at"]
        assert fleet.releases(host) == [a, b, c]
        assert not fleet.lock_exists(host)


def test_rollback_to_a_release_missing_on_one_host_moves_no_host(fleet: Shop) -> None:
    a = fleet.deploy().release
    fleet.commit(label="B")
    b = fleet.deploy().release
    web3 = fleet.rig.host("web3")
    web3.sh(f"rm -rf /srv/shop/releases/{a}", user="deployer")
    refused = fleet.fab("rollback", f"--to={a}")
    assert refused.returncode == 1
    assert f"[web3] release {a} is not on disk" in refused.stderr, refused.stderr
    assert "[web1]" not in refused.stderr and "[web2]" not in refused.stderr
    for host in fleet.rig.hosts:
        assert fleet.live(host) == b, f"{host.name} moved"
        assert not fleet.lock_exists(host)


def test_pruning_after_a_rollback_keeps_current_and_its_rollback_target(one: Shop) -> None:
    web1 = one.rig.host("web1")
    rels = []
    for n in range(4):
        one.commit(label=f"v{n + 2}")
        rels.append(one.deploy(keep_releases="10").release)
    assert one.fab("rollback").returncode == 0
    assert one.live(web1) == rels[2]
    pruned = one.fab("-H", "web1", "prune-releases", keep_releases="1")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    # keep=1: the newest folder stays, and so do current and where a rollback would go
    assert one.releases(web1) == rels[1:]
    assert one.live(web1) == rels[2]
    again = one.fab("rollback")
    assert again.returncode == 0, again.stdout + again.stderr
    assert one.live(web1) == rels[1]


def test_rollback_after_rollback_goes_where_the_last_deploy_came_from(web_rig1: Rig) -> None:
    """Issue 18.5: A -> B, rollback (to A), deploy C, rollback: back to A, never to B,
    which the first rollback rejected. ``--to`` may still name B, and says it was
    rejected."""
    shop = Shop(web_rig1, label="A")
    web1 = web_rig1.host("web1")
    a = shop.deploy(opcache="fcgi").release
    shop.commit(label="B")
    b = shop.deploy(opcache="fcgi").release
    assert label(web1) == "B"

    first = shop.fab("rollback", opcache="fcgi")
    assert first.returncode == 0, first.stdout + first.stderr
    assert (shop.live(web1), label(web1)) == (a, "A")
    assert f"release {b} marked rejected" in first.stdout, first.stdout
    rejected = record(web1, b)
    assert rejected["status"] == "rejected"
    assert rejected["rejected_by"].startswith("root@"), rejected  # who ran fab
    assert rejected["rejected_at"] >= rejected["finished"], rejected

    shop.commit(label="C")
    c = shop.deploy(opcache="fcgi").release
    assert (shop.live(web1), label(web1)) == (c, "C")
    listing = shop.fab("releases").stdout
    assert "rejected" in row(listing, b) and "by root@" in row(listing, b), listing
    assert "<- rollback" in row(listing, a), "where `fab rollback` goes: " + listing

    second = shop.fab("rollback", opcache="fcgi")
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"rollback: release {a} is live" in second.stdout, second.stdout
    assert (shop.live(web1), label(web1)) == (a, "A")
    listing = shop.fab("releases")
    assert listing.returncode == 0, listing.stderr
    for rel in (b, c):
        assert "rejected" in row(listing.stdout, rel), listing.stdout
    assert row(listing.stdout, a).startswith("*") and "live" in row(listing.stdout, a)
    assert "never a rollback target" in listing.stdout

    again = shop.fab("rollback", opcache="fcgi")  # from A: nothing before it qualifies
    assert again.returncode == 1, again.stdout + again.stderr
    assert "no earlier release" in again.stderr, again.stderr
    assert (shop.live(web1), label(web1)) == (a, "A")

    to = shop.fab("rollback", f"--to={b}", opcache="fcgi")
    assert to.returncode == 0, to.stdout + to.stderr
    assert f"release {b} had been rejected by root@" in to.stdout, to.stdout
    assert (shop.live(web1), label(web1)) == (b, "B")
    back = record(web1, b)
    assert (back["status"], back["rejected_by"], back["rejected_at"]) == ("live", "", "")
    assert (status(shop, web1, a), status(shop, web1, c)) == ("rejected", "rejected")


def test_a_release_reverted_by_the_health_check_is_never_a_rollback_target(
        web_rig1: Rig) -> None:
    shop = Shop(web_rig1, label="A")
    web1 = web_rig1.host("web1")
    a = shop.deploy(opcache="fcgi").release
    shop.commit(files={LABEL: BROKEN_LABEL})
    with pytest.raises(DeployError, match="REVERTED"):
        shop.deploy(opcache="fcgi")
    bad = next(r for r in shop.releases(web1) if r != a)
    assert status(shop, web1, bad) == "failed"
    assert (shop.live(web1), label(web1)) == (a, "A")
    refused = shop.fab("rollback", f"--to={bad}", opcache="fcgi")  # its folder is there
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"release {bad} failed (reverted: health check failed" in refused.stderr
    assert "never a rollback target" in refused.stderr
    assert (shop.live(web1), label(web1)) == (a, "A")

    shop.commit(label="C")  # Label.php fixed
    c = shop.deploy(opcache="fcgi").release
    assert label(web1) == "C"
    # the deploy pruned the failed folder; its record stays, between A and C
    assert bad not in shop.releases(web1) and status(shop, web1, bad) == "failed"
    back = shop.fab("rollback", opcache="fcgi")
    assert back.returncode == 0, back.stdout + back.stderr
    assert (shop.live(web1), label(web1)) == (a, "A")
    assert status(shop, web1, bad) == "failed"
    assert "rejected" in row(shop.fab("releases").stdout, c)


def _records(**statuses: str) -> dict[str, ReleaseRecord]:
    """Records deployed in argument order, one minute apart: ``a="previous"``, or
    ``d="live:a"`` for a live release whose record says it replaced ``a``."""
    records = {}
    for minute, (rel, spec) in enumerate(statuses.items()):
        state, _, replaced = spec.partition(":")
        records[rel] = ReleaseRecord(rel, status=state, replaced=replaced,
                                     started=f"2026-12-08T10:{minute:02d}:00+00:00")
    return records


def test_the_target_is_the_release_the_live_one_replaced_when_its_record_says_so() -> None:
    """A -> B -> C, ``rollback --to=A`` (C rejected, B still "previous"), deploy D: D
    replaced A, so a rollback goes to A. Without the relation in D's record it is the
    newest release before D that qualifies (B); rejected and failed never qualify."""
    on_disk = Releases(("a", "b", "c", "d"), (), {})
    with_relation = _records(a="previous", b="previous", c="rejected", d="live:a")
    assert rollback_target("d", with_relation) == "a"
    assert plan("d", with_relation, on_disk).target == "a"
    without = _records(a="previous", b="previous", c="rejected", d="live")
    assert rollback_target("d", without) == "b"
    assert rollback_target("d", _records(a="previous", b="failed", c="rejected",
                                         d="live")) == "a"
    # a relation to a release that no longer qualifies falls back to the order
    assert rollback_target("d", _records(a="previous", b="previous", c="rejected",
                                         d="live:c")) == "b"
    only_bad = _records(a="failed", b="rejected", c="live")
    assert rollback_target("c", only_bad) is None
    with pytest.raises(RollbackRefused, match=r"skipped: a failed, b rejected"):
        plan("c", only_bad, Releases(("a", "b", "c"), (), {}))
    assert "had been rejected" in plan("c", only_bad, Releases(("a", "b", "c"), (), {}),
                                       to="b").rejected
