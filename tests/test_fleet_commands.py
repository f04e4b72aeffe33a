"""Commands for a fleet from the command line: bin/magento on every host, and a deploy
summary as JSON for CI."""

from __future__ import annotations

import json

import pytest
from scenario import Shop

pytestmark = [pytest.mark.real_hosts, pytest.mark.slow]


def test_magento_runs_on_every_host_or_the_primary_and_fails_if_one_does(rig3) -> None:
    shop = Shop(rig3)
    summary = json.loads(shop.fab("deploy", "--json").stdout)
    assert summary["path"] == "zero-downtime" and summary["action"] == "deploy"
    assert sorted(summary["switch_offsets"]) == ["web1", "web2", "web3"]
    assert summary["release"] == shop.live(rig3.host("web1")) and summary["warnings"] == [
        "web1: OPcache not flushed (DEPLOY_OPCACHE=none): PHP may keep serving the old release",
        "web2: OPcache not flushed (DEPLOY_OPCACHE=none): PHP may keep serving the old release",
        "web3: OPcache not flushed (DEPLOY_OPCACHE=none): PHP may keep serving the old release"]

    loud = shop.fab("deploy", "--verbose", "--quiet")
    assert loud.returncode == 0, loud.stdout + loud.stderr
    for host in rig3.hosts:
        assert f"[{host.name}] $ cd /srv/shop/releases/" in loud.stdout  # every command shown
    result = shop.fab("magento", "cache:clean config")
    assert result.returncode == 0, result.stdout + result.stderr
    for host in rig3.hosts:
        assert [e["argv"][-3:] for e in shop.log(host) if e["cmd"] == "cache:clean"] == [
            ["cache:clean", "config", "--no-interaction"]]
        assert f"[{host.name}] Cleaned cache types:" in result.stdout
    once = shop.fab("magento", "cache:flush", "--primary")
    assert once.returncode == 0
    assert [sum(1 for e in shop.log(h) if e["cmd"] == "cache:flush") for h in rig3.hosts] == [
        3, 0, 0], "two deploys' cache:flush on the primary, then the one asked for"
    shop.faults(rig3.host("web2"), {"cache:clean": {"exit": 1, "message": "Redis down"}})
    failed = shop.fab("magento", "cache:clean")
    assert failed.returncode == 1 and "[web2]" in failed.stderr and "Redis down" in failed.stderr
