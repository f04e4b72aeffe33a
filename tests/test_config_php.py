"""``app/etc/config.php`` and ``setup:upgrade`` on several hosts (``tasks/configphp.py``):
a module in the code that the committed ``config.php`` does not list is refused before
the database moves, or, with ``DEPLOY_CONFIG_PHP=sync``, the file ``setup:upgrade``
rewrote on the primary reaches every host before anyone switches."""

from __future__ import annotations

import pytest
from rig import Rig
from scenario import Shop

from fabric_magento_deploy import configphp
from fabric_magento_deploy.deploy import DeployError

pytestmark = pytest.mark.real_hosts(web=False)

# A module added in the code only: registration + module.xml, not in config.php.
EXTRA = {
    "app/code/Shop/Extra/registration.php":
        "<?php\nuse FakeMagento\\ComponentRegistrar;\n\n"
        "ComponentRegistrar::register(ComponentRegistrar::MODULE, 'Shop_Extra', __DIR__);\n",
    "app/code/Shop/Extra/etc/module.xml":
        '<?xml version="1.0"?>\n<config xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        ' xsi:noNamespaceSchemaLocation="urn:magento:framework:Module/etc/module.xsd">\n'
        '    <module name="Shop_Extra" setup_version="1.0.0"/>\n</config>\n',
}


def flags(shop: Shop, rig: Rig) -> list[str]:
    return [f"{h.name}:{r}" for h in rig.hosts for r in shop.releases(h)
            if shop.release_path(h, r, "var/.maintenance.flag").exists()]


def test_a_module_missing_from_config_php_is_refused_before_the_database_moves(
        rig3: Rig) -> None:
    shop = Shop(rig3)
    live = shop.deploy().release
    shop.commit(files=EXTRA, modules={"Shop_Catalog": "1.1.0"})  # setup:upgrade must run
    modules = shop.db_state()["setup_module"]
    with pytest.raises(DeployError) as failed:
        shop.deploy()
    message = str(failed.value)
    assert "does not list: Shop_Extra" in message and "commit app/etc/config.php" in message
    assert "DEPLOY_CONFIG_PHP=sync" in message
    for host in rig3.hosts:
        assert shop.live(host) == live and shop.releases(host) == [live]
        assert "setup:upgrade" not in shop.commands(host)
    assert flags(shop, rig3) == []  # maintenance never set
    assert shop.db_state()["setup_module"] == modules  # the database untouched


def test_with_sync_every_host_gets_the_upgraded_config_php(rig3: Rig) -> None:
    shop = Shop(rig3)
    shop.deploy()
    shop.commit(files=EXTRA, modules={"Shop_Catalog": "1.1.0"})  # setup:upgrade must run
    summary = shop.deploy(config_php="sync")
    assert summary.path == "maintenance"
    files = {h.name: shop.release_path(h, summary.release, "app/etc/config.php").read_bytes()
             for h in rig3.hosts}
    assert len(set(files.values())) == 1, "the same config.php on every host"
    assert b"'Shop_Extra' => 1" in files["web1"]
    said = summary.text()
    assert "setup:upgrade rewrote app/etc/config.php on web1; copied to web2, web3" in said
    assert "+        'Shop_Extra' => 1" in said  # the diff


MODULE_STATUS = """\
List of enabled modules:
Shop_Catalog
Shop_Checkout

List of disabled modules:
Shop_Extra
Shop_Legacy
"""


CONFIG_PHP = """\
<?php
return [
    'modules' => [
        'Shop_Catalog' => 1,
        'Shop_Checkout' => 1,
        'Shop_Legacy' => 0
    ],
    'scopes' => ['websites' => ['base' => ['code' => 'base']]]
];
"""


def test_parse_unlisted_keeps_modules_config_php_disables() -> None:
    found = configphp.parse_unlisted(f"{MODULE_STATUS}@@config.php@@\n{CONFIG_PHP}")
    assert found == ["Shop_Extra"]  # Shop_Legacy is there, disabled on purpose
    none = MODULE_STATUS.replace("Shop_Extra\nShop_Legacy\n", "None\n")
    assert configphp.parse_unlisted(f"{none}@@config.php@@\n{CONFIG_PHP}") == []
