"""Rollback, the deploy lock under two concurrent deploys, and Ctrl-C during a build."""

from __future__ import annotations

import json
import signal

import pytest
from scenario import (
    Gate,
    Shop,
    eventually,
    running,
    stop_with,
)

pytestmark = pytest.mark.real_hosts


@pytest.fixture
def one(rig1):
    return Shop(rig1)


@pytest.fixture
def fleet(rig3):
    return Shop(rig3)


def status(shop: Shop, host, release: str) -> str:
    return json.loads(host.inside(f"/srv/shop/history/{release}.json").read_text())["status"]


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
        assert (status(fleet, host, b), status(fleet, host, c)) == ("live", "previous")
    to = fleet.fab("rollback", f"--to={a}")
    assert to.returncode == 0, to.stdout + to.stderr
    for host in fleet.rig.hosts:
        assert fleet.live(host) == a, host.name
        assert (status(fleet, host, a), status(fleet, host, b)) == ("live", "previous")
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
