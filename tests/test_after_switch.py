"""After the switch nothing is swallowed: every step runs, every failure is an error with a
state report, and maintenance a deploy left on is told apart from the operator's."""

from __future__ import annotations

import json

import pytest
from scenario import Shop

import fabric_magento_deploy.magento
from fabric_magento_deploy.deploy import DeployError

pytestmark = [pytest.mark.real_hosts, pytest.mark.slow]


def flag(shop: Shop, host, release: str):
    return shop.release_path(host, release, "var/.maintenance.flag")


def test_a_failed_cache_flush_is_an_error_with_the_release_live(rig3) -> None:
    shop = Shop(rig3)
    web1 = rig3.host("web1")
    shop.deploy()
    shop.commit(label="v2", modules={"Shop_Catalog": "1.1.0"})
    shop.faults(web1, {"cache:flush": {"exit": 1, "message": "Redis went away"}})
    with pytest.raises(DeployError) as err:
        shop.deploy()
    message = str(err.value)
    assert "THE RELEASE IS LIVE, BUT" in message and "Redis went away" in message
    assert "cache:flush failed: run `bin/magento cache:flush`" in message
    new = shop.live(web1)
    for host in rig3.hosts:
        assert shop.live(host) == new
        assert not flag(shop, host, new).exists(), "maintenance still lifted everywhere"
        assert f"{host.name}: current -> releases/{new}, maintenance off" in message
    record = json.loads(web1.inside(f"/srv/shop/history/{new}.json").read_text())
    assert record["status"] == "live" and "Redis went away" in record["note"]


def test_maintenance_that_cannot_be_lifted_is_an_error_naming_the_host(rig3, monkeypatch) -> None:
    shop = Shop(rig3)
    web2 = rig3.host("web2")
    shop.deploy()
    shop.commit(modules={"Shop_Catalog": "1.1.0"})
    real_off = fabric_magento_deploy.magento.maintenance_off

    def off(host, settings, releases):  # a real command that fails on a real host
        if host.name == "web2":
            host.run("false", step="maintenance off")
        real_off(host, settings, releases)

    monkeypatch.setattr(fabric_magento_deploy.magento, "maintenance_off", off)
    with pytest.raises(DeployError) as err:
        shop.deploy()
    new = shop.live(web2)
    message = str(err.value)
    assert "maintenance could not be lifted on web2" in message
    assert "fab maintenance-off --hosts=web2" in message
    assert f"web2: current -> releases/{new}, maintenance ON (set by deploy {new})" in message
    assert f"web1: current -> releases/{new}, maintenance off" in message


def test_maintenance_left_by_a_failed_upgrade_is_lifted_by_the_next_deploy(rig1) -> None:
    shop = Shop(rig1)
    web1 = rig1.host("web1")
    live = shop.deploy().release
    shop.commit(modules={"Shop_Catalog": "1.1.0"})
    shop.faults(web1, {"setup:upgrade": {"exit": 1, "message": "SQLSTATE: lock wait timeout",
                                         "when": "after"}})  # half-upgraded
    with pytest.raises(DeployError, match="HALF-UPGRADED"):
        shop.deploy()
    assert flag(shop, web1, live).read_text().startswith("set by fabric-magento-deploy: deploy")
    shop.faults(web1, {})
    summary = shop.deploy()  # the upgrade had finished its work: nothing pending now
    assert summary.path == "zero-downtime"
    assert "maintenance left on by deploy" in summary.text()
    assert not flag(shop, web1, summary.release).exists()
    assert not flag(shop, web1, live).exists()


def test_the_operators_maintenance_stays_the_operators(rig1) -> None:
    shop = Shop(rig1)
    web1 = rig1.host("web1")
    live = shop.deploy().release
    assert shop.fab("-H", "web1", "maintenance-on").returncode == 0
    shop.commit(modules={"Shop_Catalog": "1.1.0"})
    summary = shop.deploy()
    assert "under the maintenance the operator had set; it stays on" in summary.text()
    assert flag(shop, web1, summary.release).read_text() == ""
    shop.commit(label="v3")
    third = shop.deploy().release
    assert flag(shop, web1, third).exists(), "a later deploy does not lift it either"
    assert flag(shop, web1, live).exists()


def test_rollback_flushes_the_cache_and_fails_loudly_when_opcache_is_not_flushed(rig1) -> None:
    shop = Shop(rig1)
    web1 = rig1.host("web1")
    first = shop.deploy().release
    shop.commit(label="v2")
    shop.deploy()
    result = shop.fab("rollback", opcache="command", opcache_command="false")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "THE ROLLBACK IS LIVE, BUT" in result.stderr
    assert "OPcache was not flushed" in result.stderr
    assert shop.live(web1) == first
    flushes = [e for e in shop.log(web1) if e["cmd"] == "cache:flush"]
    assert flushes[-1]["bp"].endswith(f"/releases/{first}"), "cache:flush from the target"
