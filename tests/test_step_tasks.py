"""The step-by-step tasks keep the deploy's guarantees: one release id on every host,
the lock, no switch to a release that is not built, maintenance on every host."""

from __future__ import annotations

import re

import pytest
from scenario import Shop

pytestmark = [pytest.mark.real_hosts, pytest.mark.slow]


def test_steps_over_two_hosts_agree_and_refuse_what_deploy_would(rig3) -> None:
    shop = Shop(rig3)
    web1, web2 = rig3.host("web1"), rig3.host("web2")
    live = shop.deploy().release
    shop.commit(label="v2", modules={"Shop_Catalog": "1.1.0"})
    hosts = "web1,web2,web3"
    prepared = shop.fab("-H", hosts, "prepare-release")
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    ids = set(re.findall(r"prepared release (\S+)", prepared.stdout))
    assert len(ids) == 1, prepared.stdout
    rel = ids.pop()
    assert all(rel in shop.releases(h) for h in rig3.hosts)

    early = shop.fab("-H", "web1", "switch-symlink")
    assert early.returncode == 1 and f"release {rel} is building" in early.stderr
    sneaky = shop.fab("-H", "web1", "switch-symlink", "--release=../../../tmp")
    assert sneaky.returncode == 2 and "not a release id" in sneaky.stderr
    assert shop.live(web1) == live

    assert shop.fab("-H", hosts, "build").returncode == 0
    web1.sh("touch /srv/shop/deploy.lock")  # someone else holds web1
    held = shop.fab("-H", "web1", "switch-symlink")
    assert held.returncode == 1 and "deploy.lock is held" in held.stderr
    web1.sh("rm /srv/shop/deploy.lock")

    upgraded = shop.fab("-H", hosts, "maybe-upgrade")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    for host in rig3.hosts:
        assert shop.release_path(host, live, "var/.maintenance.flag").exists(), host.name
        assert shop.release_path(host, rel, "var/.maintenance.flag").exists(), host.name
    assert [sum(shop.commands(h).count("setup:upgrade") for h in (web1,)),
            sum(shop.commands(h).count("setup:upgrade") for h in rig3.hosts[1:])] == [1, 0]
    finish = shop.fab("-H", hosts, "switch-symlink", "maintenance-off")
    assert finish.returncode == 0, finish.stdout + finish.stderr
    assert {shop.live(h) for h in rig3.hosts} == {rel}
    assert not shop.release_path(web2, rel, "var/.maintenance.flag").exists()
    assert not shop.release_path(web2, live, "var/.maintenance.flag").exists(), \
        "the flag the upgrade set in the old release is lifted too: a rollback must not show it"

    back = shop.fab("rollback")
    assert back.returncode == 1, back.stdout + back.stderr
    assert f"refusing to roll back from {rel}" in back.stderr, \
        "maybe-upgrade records the schema change as the deploy does"
    assert {shop.live(h) for h in rig3.hosts} == {rel}
