"""What visitors see: deploys and rollbacks under continuous HTTP load on real nginx +
php-fpm (OPcache on, ``validate_timestamps=0``, nginx passing ``$document_root``: the
setup in which PHP keeps serving the old release unless OPcache is reset)."""

from __future__ import annotations

import time

import pytest
from load import HttpLoad
from scenario import Shop

from tasks.deploy import DeployError

pytestmark = pytest.mark.real_hosts(web=True)


def deploy_under_load(shop: Shop, **settings: str):
    with HttpLoad.on_rig(shop.rig) as load:
        load.wait_ok()
        summary = shop.deploy(**settings)
        done = time.time()
        time.sleep(1.0)
    return load, summary, done


@pytest.mark.parametrize("strategy", ["fcgi", "url"])
def test_code_only_release_under_load_has_no_failed_request(web_rig3, strategy: str) -> None:
    shop = Shop(web_rig3, label="A")
    extra = {"opcache": strategy}
    if strategy == "url":
        extra["opcache_url"] = f"http://shop.test:{web_rig3.hosts[0].http_port}/"
    shop.deploy(**extra)
    shop.commit(label="B")
    load, summary, done = deploy_under_load(shop, **extra)
    assert summary.path == "zero-downtime"
    assert load.failed() == [], load.summary()
    assert load.maintenance() == [], load.summary()
    assert load.stale_after(done, "A") == [], load.summary()
    for host in web_rig3.hosts:
        assert load.labels()[host.name][-1] == "B", load.summary()
        leftovers = host.sh("find /srv/shop -name '.opcache-*' -o -name 'opcache-reset-*'",
                            user="root").stdout.strip()
        assert leftovers == "", "temporary OPcache PHP file left behind"
        assert host.sh("stat -c %U /srv/shop/current", user="root").stdout.strip() == "deployer"
    assert summary.switch_spread < 0.5


def test_schema_release_window_is_the_upgrade_plus_at_most_a_second(web_rig3) -> None:
    shop = Shop(web_rig3, label="A")
    shop.deploy(opcache="fcgi")
    shop.commit(label="B", modules={"Shop_Catalog": "1.1.0"})
    shop.faults(web_rig3.host("web1"), {"setup:upgrade": {"sleep": 2.0}})
    load, summary, done = deploy_under_load(shop, opcache="fcgi")
    assert summary.path == "maintenance"
    assert load.failed() == [], load.summary()
    window = load.window("maintenance")
    assert window is not None, "visitors never saw the maintenance page"
    seen = window[1] - window[0]
    assert seen <= summary.upgrade_seconds + 1.0, (seen, summary.upgrade_seconds)
    assert load.stale_after(done, "A") == [], load.summary()
    upgrades = sum(shop.commands(h).count("setup:upgrade") for h in web_rig3.hosts)
    assert upgrades == 1


def test_failed_build_on_one_host_keeps_all_serving_the_old_release(web_rig3) -> None:
    shop = Shop(web_rig3, label="A")
    shop.deploy(opcache="fcgi")
    shop.commit(label="B")
    shop.faults(web_rig3.host("web3"), {"setup:di:compile": {"exit": 1, "message": "boom"}})
    with HttpLoad.on_rig(web_rig3) as load:
        load.wait_ok()
        with pytest.raises(DeployError):
            shop.deploy(opcache="fcgi")
        time.sleep(0.5)
    assert load.failed() == [], load.summary()
    assert all(labels == ["A"] for labels in load.labels().values()), load.summary()


def test_rollback_under_load_serves_the_previous_release(web_rig1) -> None:
    shop = Shop(web_rig1, label="A")
    shop.deploy(opcache="fcgi")
    shop.commit(label="B")
    shop.deploy(opcache="fcgi")
    with HttpLoad.on_rig(web_rig1) as load:
        load.wait_ok()
        result = shop.fab("rollback", opcache="fcgi")
        done = time.time()
        time.sleep(1.0)
    assert result.returncode == 0, result.stdout + result.stderr
    assert load.failed() == [], load.summary()
    assert load.stale_after(done, "B") == [], load.summary()
    assert load.labels()["web1"][-1] == "A"
    shop.commit(label="C", modules={"Shop_Catalog": "1.1.0"})
    shop.deploy(opcache="fcgi")
    with HttpLoad.on_rig(web_rig1) as load:
        load.wait_ok()
        refused = shop.fab("rollback", opcache="fcgi")
        time.sleep(0.5)
    assert refused.returncode != 0 and "changed the database" in refused.stderr
    assert load.failed() == [] and set(load.labels()["web1"]) == {"C"}, load.summary()
