"""Blue/green mode's refusals and its env.php edit, on real hosts (the run under load is
tests/test_under_load.py::test_blue_green_schema_release_under_load)."""

from __future__ import annotations

import json

import pytest
from scenario import Shop

from fabric_magento_deploy import bluegreen
from fabric_magento_deploy.deploy import DeployError

pytestmark = pytest.mark.real_hosts

ENV_PHP = "/srv/shop/shared/app/etc/env.php"


@pytest.mark.parametrize(("output", "version"), [
    ("Magento CLI 2.4.7", (2, 4, 7)), ("Magento CLI 2.4.3-p1", (2, 4, 3)),
    ("Magento CLI UNKNOWN", None), ("", None)])
def test_parse_version(output: str, version: tuple[int, ...] | None) -> None:
    assert bluegreen.parse_version(output) == version


def env_array(shop: Shop) -> dict:
    out = shop.rig.hosts[0].sh(f"php -r 'echo json_encode(include \"{ENV_PHP}\");'",
                               user=shop.rig.user).stdout
    return json.loads(out)


def test_the_flag_is_added_and_nothing_else_changes(rig1) -> None:
    shop = Shop(rig1)
    web1 = rig1.hosts[0]
    web1.sh(f"chmod 640 {ENV_PHP}")  # a mode of the operator's choice
    before = env_array(shop)
    [host] = shop.hosts()
    settings = shop.settings()
    assert bluegreen.enable(host, settings) is True
    after = env_array(shop)
    assert after["deployment"]["blue_green"]["enabled"] is True
    after["deployment"]["blue_green"]["enabled"] = before["deployment"]["blue_green"]["enabled"]
    assert after == before, "every other setting of env.php is kept"
    assert bluegreen.enable(host, settings) is False, "idempotent"
    assert web1.sh(f"stat -c '%a %U' {ENV_PHP}").stdout.split() == ["640", rig1.user]


def test_a_live_release_older_than_2_4_4_is_refused_before_anything_changes(rig1) -> None:
    shop = Shop(rig1)
    composer = json.loads((shop.repo / "composer.json").read_text())
    shop.commit(files={"composer.json": json.dumps({**composer, "version": "2.4.3-p1"})})
    live = shop.deploy().release
    shop.commit(label="v2", modules={"Shop_Catalog": "1.1.0"})
    with pytest.raises(DeployError) as refused:
        shop.deploy(upgrade_mode="blue-green")
    message = str(refused.value)
    assert f"release {live} is 'Magento CLI 2.4.3-p1'" in message, message
    assert "from 2.4.4" in message and "[web1]" in message
    [host] = rig1.hosts
    assert shop.live(host) == live and shop.releases(host) == [live]
    assert [c for c in shop.commands(host) if c == "setup:upgrade"] == []
    assert env_array(shop)["deployment"]["blue_green"]["enabled"] is False


def test_without_an_opcache_flush_the_flag_cannot_take_effect(rig1) -> None:
    """DEPLOY_OPCACHE=none: PHP-FPM would keep the env.php it compiled, so the deploy stops
    before the database work (the flag itself is harmless and stays)."""
    shop = Shop(rig1)
    live = shop.deploy().release
    shop.commit(label="v2", modules={"Shop_Catalog": "1.1.0"})
    with pytest.raises(DeployError) as stopped:
        shop.deploy(upgrade_mode="blue-green", opcache="none")
    assert "DEPLOY_OPCACHE=none cannot make PHP-FPM read it again" in str(stopped.value)
    [host] = rig1.hosts
    assert shop.live(host) == live
    assert [c for c in shop.commands(host) if c == "setup:upgrade"] == [], \
        "the database was not touched"
