"""Part of the shop on purpose only: a deploy or rollback to some of DEPLOY_HOSTS needs
--partial, and every deploy of one shop also locks its primary, so two deploys to
disjoint hosts can never both upgrade the one database."""

from __future__ import annotations

import pytest
from scenario import Gate, Shop, eventually

pytestmark = [pytest.mark.real_hosts, pytest.mark.slow]


@pytest.fixture
def fleet(rig3) -> Shop:
    shop = Shop(rig3)
    shop.deploy()
    return shop


def test_a_subset_of_the_hosts_needs_partial(fleet: Shop) -> None:
    web3 = fleet.rig.host("web3")
    live = fleet.live(web3)
    fleet.commit(label="v2")
    refused = fleet.fab("deploy", "--hosts=web1,web2")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "DEPLOY_HOSTS also lists web3" in refused.stderr and "--partial" in refused.stderr
    assert all(fleet.live(h) == live for h in fleet.rig.hosts)
    done = fleet.fab("deploy", "--hosts=web1,web2", "--partial")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "partial: web3 left on their old release" in done.stdout
    assert fleet.live(web3) == live and fleet.live(fleet.rig.host("web1")) != live
    back = fleet.fab("rollback", "--hosts=web1,web2")
    assert back.returncode == 2 and "--partial" in back.stderr


def test_two_partial_deploys_cannot_both_hold_the_database(fleet: Shop) -> None:
    """web2 and web3 are disjoint, but both deploys lock web1 (the first of DEPLOY_HOSTS)."""
    fleet.commit(modules={"Shop_Catalog": "1.1.0"})
    gate = Gate(fleet.rig, ["web2"])
    first = fleet.fab_background("deploy", "--hosts=web2", "--partial", composer=gate.command)
    try:
        eventually(lambda: gate.waiting(fleet.rig.host("web2")), "the first deploy building")
        assert fleet.lock_exists(fleet.rig.host("web1")), "the primary's lock is taken"
        second = fleet.fab("deploy", "--hosts=web3", "--partial")
        assert second.returncode == 1, second.stdout + second.stderr
        assert "deploy.lock is held by" in second.stderr and "[web1]" in second.stderr
        assert not fleet.lock_exists(fleet.rig.host("web3")), "the refusal released web3"
    finally:
        gate.open()
    out = first.communicate(timeout=180)[0]
    assert first.returncode == 0, out
    assert not fleet.lock_exists(fleet.rig.host("web1"))
    upgrades = sum(fleet.commands(h).count("setup:upgrade") for h in fleet.rig.hosts)
    assert upgrades == 1
