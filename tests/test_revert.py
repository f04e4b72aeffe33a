"""The post-switch health check (DEPLOY_HEALTH_PATHS on every host, tasks/health.py) and
the automatic revert: a release whose storefront answers 500 after the switch goes back
out on every host, unless it moved the database under maintenance (then it stays, said
loudly)."""

from __future__ import annotations

import json
import os
import time

import pytest
from load import HttpLoad
from rig import Rig
from scenario import Shop, polling

from fabric_magento_deploy.deploy import DeployError

pytestmark = [pytest.mark.real_hosts(web=True), pytest.mark.slow]

# Fatal only for a web request: every build step (which loads the file from the CLI) passes.
BROKEN_LABEL = ("<?php\nreturn PHP_SAPI === 'cli' ? 'label'"
                " : \\Shop\\Catalog\\render_label();\n")
LABEL = "app/code/Shop/Catalog/Label.php"


def record(rig: Rig, release: str) -> dict:
    return json.loads(rig.hosts[-1].inside(f"/srv/shop/history/{release}.json").read_text())


def test_a_release_answering_500_is_reverted_on_every_host(web_rig3: Rig) -> None:
    shop = Shop(web_rig3, label="A")
    good = shop.deploy(opcache="fcgi").release
    assert record(web_rig3, good)["health"]["ok"] is True
    shop.commit(files={LABEL: BROKEN_LABEL})
    with HttpLoad({h.name: h.url() for h in web_rig3.hosts}) as load:
        with pytest.raises(DeployError) as failed:
            shop.deploy(opcache="fcgi")
        load.wait_after(time.time())  # pages started after the revert, on every host
    message = str(failed.value)
    assert "health check failed after the switch" in message and "HTTP 500" in message
    assert "REVERTED" in message
    assert {shop.live(h) for h in web_rig3.hosts} == {good}
    bad = [r for r in shop.releases(web_rig3.hosts[0]) if r != good][-1]
    assert record(web_rig3, bad)["status"] == "failed"
    assert record(web_rig3, bad)["health"]["ok"] is False
    assert record(web_rig3, good)["status"] == "live"
    for host in web_rig3.hosts:
        assert load.labels()[host.name][-1] == "A", load.summary()  # serving A again
    assert load.failed(), "the broken release was live for a moment: the check saw it"
    listed = shop.fab("releases")
    assert "FAILED" in listed.stdout, listed.stdout


def test_a_schema_release_answering_500_is_kept_and_said_loudly(web_rig1: Rig) -> None:
    shop = Shop(web_rig1, label="A")
    shop.deploy(opcache="fcgi")
    shop.commit(files={LABEL: BROKEN_LABEL}, modules={"Shop_Catalog": "1.1.0"})
    with pytest.raises(DeployError) as failed:
        shop.deploy(opcache="fcgi")
    message = str(failed.value)
    assert "THE RELEASE IS LIVE, BUT" in message and "NOT reverted" in message
    assert "ran setup:upgrade under maintenance" in message
    [host] = web_rig1.hosts
    live = shop.live(host)
    assert record(web_rig1, live)["health"]["ok"] is False


def test_a_release_failing_verification_on_one_host_goes_live_nowhere(web_rig3: Rig) -> None:
    """web2's env.php says developer mode: the new release is built everywhere, fails the
    pre-switch check on web2 only, and no host switches to it."""
    shop = Shop(web_rig3, label="A")
    good = shop.deploy(opcache="fcgi").release
    web2 = web_rig3.host("web2")
    env_php = web2.inside("/srv/shop/shared/app/etc/env.php")
    env_php.write_text(env_php.read_text().replace("'production'", "'developer'"))
    shop.commit(label="B")
    with pytest.raises(DeployError) as failed:
        shop.deploy(opcache="fcgi")
    message = str(failed.value)
    assert "failed verification" in message and "[web2] mode" in message, message
    assert "[web1]" not in message and "[web3]" not in message, message
    assert {shop.live(h) for h in web_rig3.hosts} == {good}
    assert all(shop.releases(h) == [good] for h in web_rig3.hosts), "the new folders go"
    acted = [h.name for h in web_rig3.hosts
             if {"setup:upgrade", "maintenance:enable"} & set(shop.commands(h))]
    assert acted == [], "nothing acts on the database or maintenance for an unverified B"


def test_a_host_lost_between_switch_and_switch_back_is_named_the_others_are_flushed(
        web_rig3: Rig) -> None:
    """web2 dies for SSH right after it switched to a release that answers 500: the revert
    puts web1 and web3 back AND flushes them (else their FPM workers keep the rejected
    code: OPcache never revalidates on the rig), and names web2 with what to run."""
    shop = Shop(web_rig3, label="A")
    good = shop.deploy(opcache="fcgi").release
    web2 = web_rig3.host("web2")
    current = web2.inside("/srv/shop/current")
    shop.commit(files={LABEL: BROKEN_LABEL})
    killed: list[int] = []

    def kill_once_switched() -> None:
        if not killed and os.path.basename(os.readlink(current)) != good:
            killed.extend(web2.kill_ssh())

    alive = [h for h in web_rig3.hosts if h is not web2]
    with HttpLoad({h.name: h.url() for h in alive}) as load:
        with polling(kill_once_switched, 0.002), pytest.raises(DeployError) as failed:
            shop.deploy(opcache="fcgi")
        ended = time.time()
        load.wait_after(ended)
    assert killed, "web2 was never switched"
    message = str(failed.value)
    new = shop.live(web2)
    assert new != good
    assert "REVERTED: web1, web3 back on the release served before" in message, message
    assert (f"could NOT switch back web2: still serving release {new}" in message
            and f"fab switch-symlink --release={good} --hosts=web2" in message), message
    for host in alive:
        assert shop.live(host) == good
        after = [(s.status, s.label) for s in load.samples
                 if s.host == host.name and s.t_start > ended]
        assert after and set(after) == {(200, "A")}, load.summary()  # flushed: A again
        rec = json.loads(host.inside(f"/srv/shop/history/{new}.json").read_text())
        assert rec["status"] == "failed" and "web2" in rec["note"], rec
    web2.start_sshd()
