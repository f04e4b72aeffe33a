"""Build once, ship everywhere (DEPLOY_BUILD=local): the machine running the deploy
builds, the hosts only receive the release over rsync and run the database check, the
switch and the flush. A code-only release sends a fraction of a full one."""

from __future__ import annotations

import os

import pytest
from scenario import Shop

from fabric_magento_deploy.deploy import DeployError

pytestmark = pytest.mark.real_hosts

BUILD_COMMANDS = ("setup:di:compile", "setup:static-content:deploy")


@pytest.fixture
def shop(rig3) -> Shop:
    return Shop(rig3)


def local(shop: Shop) -> dict[str, str]:
    return {"build": "local", "build_dir": str(shop.rig.base / "builder")}


def test_built_once_and_shipped_to_every_host(shop: Shop) -> None:
    first = shop.deploy(**local(shop))
    hosts = shop.rig.hosts
    assert {shop.live(h) for h in hosts} == {first.release}
    for host in hosts:
        ran = shop.commands(host)
        assert not [c for c in ran if c.startswith(BUILD_COMMANDS)], (host.name, ran)
        assert ran.count("setup:db:status") == (1 if host is hosts[0] else 0)
        release = shop.release_path(host, first.release)
        assert (release / "vendor/autoload.php").is_file()
        assert (release / "generated/code").is_dir()
        assert (release / "pub/static/deployed_version.txt").read_text().strip() \
            == first.release.replace(".", "")
        assert os.readlink(release / "app/etc/env.php") == "/srv/shop/shared/app/etc/env.php"
    assert first.built_once_seconds is not None
    full = first.sent_bytes
    assert set(full) == {h.name for h in hosts} and min(full.values()) > 0

    shop.commit(label="v2")  # code only: one file of the shop changes
    second = shop.deploy(**local(shop))
    assert {shop.live(h) for h in hosts} == {second.release}
    assert second.path == "zero-downtime"
    for host in hosts:
        assert second.sent_bytes[host.name] < full[host.name] / 3, (second.sent_bytes, full)
        same = "app/code/Shop/Checkout/Model/Cart.php"  # unchanged: one inode in both
        assert (shop.release_path(host, first.release, same).stat().st_ino
                == shop.release_path(host, second.release, same).stat().st_ino)
    assert "storefront: v2" in shop.rig.host("web2").sh(
        "cd /srv/shop/current && php -r 'echo \"storefront: \" . "
        "(include \"app/code/Shop/Catalog/Label.php\");'", user="deployer").stdout


def test_config_without_scopes_is_refused_before_building(shop: Shop) -> None:
    modules_only = "<?php\nreturn ['modules' => ['Shop_Catalog' => 1, 'Shop_Checkout' => 1]];\n"
    shop.commit(files={"app/etc/config.php": modules_only})
    with pytest.raises(DeployError) as failed:
        shop.deploy(**local(shop))
    assert "app/etc/config.php has no scopes and themes" in str(failed.value)
    assert "bin/magento app:config:dump scopes themes i18n" in str(failed.value)
    for host in shop.rig.hosts:
        assert shop.live(host) is None and shop.releases(host) == []


def test_pruning_a_shipped_release_never_changes_a_file_the_live_ones_share(
        shop: Shop) -> None:
    """Shipped releases share unchanged files (one inode) with the release before. The
    one pruned must go without changing a mode: a `chmod -R u+w` over it would make the
    previous release's read-only file writable too."""
    settings = {**local(shop), "keep_releases": "2"}
    first = shop.deploy(**settings).release
    shop.commit(label="v2")
    second = shop.deploy(**settings).release
    same = "app/code/Shop/Checkout/Model/Cart.php"
    for host in shop.rig.hosts:  # one inode in both; read-only, as some vendor files are
        host.sh(f"chmod 0444 /srv/shop/releases/{second}/{same}", user="deployer")
        assert (shop.release_path(host, first, same).stat().st_ino
                == shop.release_path(host, second, same).stat().st_ino)
    shop.commit(label="v3")
    third = shop.deploy(**settings).release
    for host in shop.rig.hosts:
        assert shop.releases(host) == [second, third], "the first was pruned"
        mode = shop.release_path(host, second, same).stat().st_mode & 0o777
        assert mode == 0o444, f"{host.name}: {oct(mode)}: pruning changed a shared file"
