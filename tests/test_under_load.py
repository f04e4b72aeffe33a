"""What visitors see: deploys and rollbacks under continuous HTTP load on real nginx +
php-fpm, through a customer's eyes.

The hosts run Magento 2.4.7's nginx rules (``tests/rig.py``: digits-only static signature,
missing static files to ``static.php`` which answers 404 in production, PHP only for the
entry points), php-fpm with OPcache and ``validate_timestamps=0`` behind
``$document_root`` (PHP keeps serving the old release unless OPcache is reset). The load
(``tests/load.py``) requests the storefront on every host and then, like a browser, the
stylesheet each page links, from the same host.

Every scenario asserts counts and orders, never wall-clock budgets: failed pages, broken
static assets, answers from the old release after the deploy returned, the maintenance
page on *each* host while ``setup:upgrade`` ran, and each host's maintenance window
against the window the tool itself reports (plus a generous margin for request latency).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from load import HttpLoad
from rig import Rig, WebHost, documented_opcache_location
from scenario import Shop

from fabric_magento_deploy.deploy import DeployError
from fabric_magento_deploy.report import Summary

pytestmark = [pytest.mark.real_hosts(web=True), pytest.mark.slow]

# Request latency on a busy 2-core machine, on each side of a window: a visitor's request
# that starts just before the flag appears, or ends just after it goes, still counts.
LATENCY_MARGIN = 2.0
INTERCEPTOR = "Shop\\\\Catalog\\\\Model\\\\Product\\\\Interceptor"  # as the class map writes it


@dataclass
class Run:
    """One deploy (or rollback) under load: the load's record, when the tool returned and
    what it returned (a :class:`Summary`, a ``fab`` process...)."""

    load: HttpLoad
    done: float
    result: object = None

    @property
    def summary(self) -> Summary:
        assert isinstance(self.result, Summary), self.result
        return self.result


def under_load(rig: Rig, action: Callable[[], object], *, after: int = 8) -> Run:
    """Run ``action`` while every host is loaded; keep loading until each host answered
    ``after`` more pages (polled to a deadline, not slept), so "nothing stale after the
    deploy" is checked on real answers."""
    with HttpLoad.on_rig(rig) as load:
        load.wait_ok()
        result = action()
        done = time.time()
        load.wait_after(done, count=after)
    return Run(load, done, result)


def rig_for(request: pytest.FixtureRequest, hosts: int) -> Rig:
    return request.getfixturevalue(f"web_rig{hosts}")


def url_settings(rig: Rig) -> dict[str, str]:
    """The ``url`` strategy, with nginx given exactly the block docs/opcache.md documents."""
    rig.start_web(extra_locations=documented_opcache_location())
    return {"opcache": "url", "opcache_url": f"http://shop.test:{rig.hosts[0].http_port}/"}


# --------------------------------------------------------------------------- what to check


def assert_no_broken_static_assets(run: Run, rig: Rig, label: str) -> None:
    """0 broken assets, and the check is not vacuous: every host served ``label``'s pages
    with their stylesheet, all hosts linking the very same versioned URL."""
    load = run.load
    assert load.broken_assets() == [], load.summary()
    urls = {}
    for host in rig.hosts:
        fetched = {s.path for s in load.assets(host.name) if s.label == label and s.kind == "ok"}
        assert fetched, f"{host.name}: no stylesheet of release {label} fetched\n{load.summary()}"
        urls[host.name] = fetched
    assert len({frozenset(u) for u in urls.values()}) == 1, urls


def assert_static_version_is_the_deployed_one(shop: Shop, run: Run) -> None:
    """The signature pages link is the live release's deployed_version.txt on every host."""
    versions = run.load.static_versions()
    for host in shop.rig.hosts:
        live = shop.live(host)
        assert live is not None
        deployed = shop.release_path(host, live, "pub/static/deployed_version.txt").read_text()
        assert versions[host.name][-1] == deployed, (host.name, versions, deployed)


def assert_class_map_has_generated_classes(shop: Shop) -> None:
    """The build ran ``dump-autoload -o`` after ``di:compile`` on every host."""
    for host in shop.rig.hosts:
        live = shop.live(host)
        assert live is not None
        classmap = shop.release_path(host, live, "vendor/composer/autoload_classmap.php")
        assert INTERCEPTOR in classmap.read_text(), f"{host.name}: Interceptor not in class map"


def assert_switch_after_every_build(shop: Shop, run: Run, label: str) -> None:
    """No host served the new release before every host finished building it: the first
    answer of ``label`` anywhere ended after the last static content deploy ended."""
    built = [e["t"] for h in shop.rig.hosts for e in shop.log(h)
             if e["cmd"] == "setup:static-content:deploy" and e["t_start"] > run.load.started_at]
    assert len(built) >= len(shop.rig.hosts), built
    new_ends = [s.t_end for s in run.load.samples if s.label == label]
    assert new_ends, run.load.summary()
    assert min(new_ends) > max(built), (min(new_ends), max(built))


def upgrade_interval(shop: Shop, primary: WebHost) -> tuple[float, float]:
    """When ``setup:upgrade`` ran (its own command log, wall clock like the load)."""
    [entry] = [e for e in shop.log(primary) if e["cmd"] == "setup:upgrade"]
    return entry["t_start"], entry["t"]


def assert_maintenance_on_every_host(shop: Shop, run: Run) -> None:
    """Per host, not over all hosts together: while setup:upgrade ran, every page was the
    maintenance page (and there were such pages); the host's maintenance window is no
    longer than the window the tool reports, plus request latency; none after it returned."""
    assert run.summary.maintenance_seconds is not None
    t0, t1 = upgrade_interval(shop, shop.rig.hosts[0])
    load = run.load
    for host in shop.rig.hosts:
        during = load.within(t0, t1, host.name)
        assert during, f"{host.name}: no page during setup:upgrade\n{load.summary()}"
        assert {s.kind for s in during} == {"maintenance"}, [str(s) for s in during][:10]
        window = load.window("maintenance", host=host.name)
        assert window is not None
        seen = window[1] - window[0]
        assert seen <= run.summary.maintenance_seconds + LATENCY_MARGIN, (
            host.name, seen, run.summary.maintenance_seconds)
        assert [s for s in load.maintenance(host.name) if s.t_start > run.done] == []


# --------------------------------------------------------------------------- deploys


@pytest.mark.parametrize(("hosts", "strategy"), [(1, "fcgi"), (3, "fcgi"), (3, "url")])
def test_code_only_release_under_load(request: pytest.FixtureRequest, hosts: int,
                                      strategy: str) -> None:
    rig = rig_for(request, hosts)
    settings = url_settings(rig) if strategy == "url" else {"opcache": "fcgi"}
    shop = Shop(rig, label="A")
    shop.deploy(**settings)
    shop.commit(label="B")
    run = under_load(rig, lambda: shop.deploy(**settings))
    load = run.load
    assert run.summary.path == "zero-downtime"
    assert load.failed() == [], load.summary()
    assert load.maintenance() == [], load.summary()
    assert_no_broken_static_assets(run, rig, "B")
    assert_static_version_is_the_deployed_one(shop, run)
    assert load.stale_after(run.done, "A") == [], load.summary()
    assert_switch_after_every_build(shop, run, "B")
    assert_class_map_has_generated_classes(shop)
    for host in rig.hosts:
        assert load.labels()[host.name][-1] == "B", load.summary()
        leftovers = host.sh("find /srv/shop -name '.opcache-*' -o -name 'opcache-reset-*'")
        assert leftovers.stdout.strip() == "", "temporary OPcache PHP file left behind"
        assert host.sh("stat -c %U /srv/shop/current").stdout.strip() == "deployer"


@pytest.mark.parametrize("hosts", [1, 3])
def test_schema_release_under_load(request: pytest.FixtureRequest, hosts: int) -> None:
    rig = rig_for(request, hosts)
    shop = Shop(rig, label="A")
    shop.deploy(opcache="fcgi")
    shop.commit(label="B", modules={"Shop_Catalog": "1.1.0"})
    shop.faults(rig.host("web1"), {"setup:upgrade": {"sleep": 2.0}})
    run = under_load(rig, lambda: shop.deploy(opcache="fcgi"))
    load = run.load
    assert run.summary.path == "maintenance"
    assert_maintenance_on_every_host(shop, run)
    assert load.failed() == [], load.summary()
    assert_no_broken_static_assets(run, rig, "B")
    assert_static_version_is_the_deployed_one(shop, run)
    assert load.stale_after(run.done, "A") == [], load.summary()
    upgrades = [h.name for h in rig.hosts for c in shop.commands(h) if c == "setup:upgrade"]
    assert upgrades == ["web1"]


def test_failed_build_on_one_host_keeps_all_serving_the_old_release(web_rig3: Rig) -> None:
    shop = Shop(web_rig3, label="A")
    shop.deploy(opcache="fcgi")
    shop.commit(label="B")
    shop.faults(web_rig3.host("web3"), {"setup:di:compile": {"exit": 1, "message": "boom"}})

    def failing_deploy() -> None:
        with pytest.raises(DeployError):
            shop.deploy(opcache="fcgi")

    run = under_load(web_rig3, failing_deploy)
    assert run.load.failed() == [], run.load.summary()
    assert all(labels == ["A"] for labels in run.load.labels().values()), run.load.summary()
    assert_no_broken_static_assets(run, web_rig3, "A")


def test_rollback_under_load_serves_the_previous_release(web_rig1: Rig) -> None:
    shop = Shop(web_rig1, label="A")
    shop.deploy(opcache="fcgi")
    shop.commit(label="B")
    shop.deploy(opcache="fcgi")
    run = under_load(web_rig1, lambda: shop.fab("rollback", opcache="fcgi"))
    load = run.load
    assert isinstance(run.result, subprocess.CompletedProcess)
    assert run.result.returncode == 0, run.result.stdout + run.result.stderr
    assert load.failed() == [], load.summary()
    assert load.stale_after(run.done, "B") == [], load.summary()
    assert load.labels()["web1"][-1] == "A"
    assert_no_broken_static_assets(run, web_rig1, "A")
    shop.commit(label="C", modules={"Shop_Catalog": "1.1.0"})
    shop.deploy(opcache="fcgi")
    refused = under_load(web_rig1, lambda: shop.fab("rollback", opcache="fcgi"), after=3)
    assert isinstance(refused.result, subprocess.CompletedProcess)
    assert refused.result.returncode != 0
    assert "changed the database" in refused.result.stderr
    assert refused.load.failed() == [], refused.load.summary()
    assert set(refused.load.labels()["web1"]) == {"C"}, refused.load.summary()
    assert_no_broken_static_assets(refused, web_rig1, "C")


def test_blue_green_schema_release_under_load(web_rig3: Rig) -> None:
    """An additive schema release with DEPLOY_UPGRADE_MODE=blue-green: the flag is set in
    every host's env.php (OPcache flushed so PHP reads it), setup:upgrade runs while the
    old release keeps serving, no 503 and no 500 anywhere."""
    rig = web_rig3
    shop = Shop(rig, label="A")  # env.php without the flag
    shop.deploy(opcache="fcgi")
    shop.commit(label="B", modules={"Shop_Catalog": "1.1.0"})
    shop.faults(rig.host("web1"), {"setup:upgrade": {"sleep": 2.0}})
    run = under_load(rig, lambda: shop.deploy(opcache="fcgi", upgrade_mode="blue-green"))
    load = run.load
    assert run.summary.path == "blue-green", run.summary.text()
    assert run.summary.maintenance_seconds is None
    assert load.maintenance() == [], load.summary()
    assert load.failed() == [], load.summary()
    t0, t1 = upgrade_interval(shop, rig.hosts[0])
    for host in rig.hosts:
        during = load.within(t0, t1, host.name)
        assert during and {s.label for s in during} == {"A"}, [str(s) for s in during][:10]
        env_php = host.inside("/srv/shop/shared/app/etc/env.php").read_text()
        assert "'blue_green' =>" in env_php and "'enabled' => true" in env_php
    assert_no_broken_static_assets(run, rig, "B")
    assert load.stale_after(run.done, "A") == [], load.summary()
    record = json.loads(rig.host("web2").inside(
        f"/srv/shop/history/{run.summary.release}.json").read_text())
    assert record["setup_upgrade"] and record["blue_green"]
