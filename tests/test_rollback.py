"""Rollback, the deploy lock under two concurrent deploys, and Ctrl-C during a build."""

from __future__ import annotations

import signal
import time

import pytest
from scenario import Shop

pytestmark = pytest.mark.real_hosts


@pytest.fixture
def one(rig1):
    return Shop(rig1)


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
    one.faults(web1, {"setup:di:compile": {"sleep": 2.0}})
    first = one.fab_background("deploy", "--quiet")
    second = one.fab_background("deploy", "--quiet")
    outputs = [p.communicate(timeout=120)[0] for p in (first, second)]
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 1], outputs
    loser = outputs[[first.returncode, second.returncode].index(1)]
    assert "deploy.lock is held by" in loser
    assert len(one.releases(web1)) == 1
    assert not one.lock_exists(web1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_during_build_leaves_current_and_no_lock(one: Shop, sig: int) -> None:
    web1 = one.rig.host("web1")
    live = one.deploy().release
    one.commit(label="B")
    one.faults(web1, {"setup:di:compile": {"sleep": 30.0}})
    proc = one.fab_background("deploy")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the build is in di:compile
        if len(one.releases(web1)) == 2 and one.releases(web1)[-1] != live and any(
                "setup:di:compile" in line for line in web1.sh("ps -eo args").stdout.splitlines()):
            break
        time.sleep(0.05)
    else:
        pytest.fail("build did not reach di:compile")
    proc.send_signal(sig)
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode != 0, out
    assert one.live(web1) == live
    assert one.releases(web1) == [live]
    assert not one.lock_exists(web1)
    time.sleep(0.3)
    ps = web1.sh("ps -eo args").stdout
    assert "setup:di:compile" not in ps, "the interrupted build still runs on the host"
