"""Shared data (``env.php`` with the crypt key, ``pub/media``) survives every bad setting.

Each case is a way a real configuration destroyed data before: shared entries inside
one another, and a checkout whose own symlink leads a shared path into ``shared/``.
After each, the shared files are compared byte for byte with what was there before.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from scenario import Shop

pytestmark = pytest.mark.real_hosts


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (links not followed), by relative path."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            files[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


@pytest.fixture
def shop(rig1) -> Shop:
    shop = Shop(rig1)
    web1 = rig1.host("web1")
    shop.deploy()
    shared = web1.inside("/srv/shop/shared")
    (shared / "pub/media/catalog/product").mkdir(parents=True)
    (shared / "pub/media/catalog/product/shoe.jpg").write_bytes(os.urandom(4096))
    (shared / "var/log").mkdir(parents=True, exist_ok=True)
    (shared / "var/log/system.log").write_text("2026-12-01 order 100000042 paid\n")
    web1.sh("chown -R deployer: /srv/shop/shared")
    return shop


@pytest.mark.parametrize(("settings", "named"), [
    ({"shared_dirs": "app/etc"}, ["DEPLOY_SHARED_DIRS: 'app/etc'",
                                  "DEPLOY_SHARED_FILES: 'app/etc/env.php'"]),
    ({"shared_dirs": "pub/media pub/media/catalog"}, ["'pub/media'", "'pub/media/catalog'"]),
])
def test_nested_shared_paths_are_refused_before_any_host_is_touched(
        shop: Shop, settings: dict, named: list[str]) -> None:
    web1 = shop.rig.host("web1")
    before, live = snapshot(web1.inside("/srv/shop/shared")), shop.live(web1)
    calls = len(shop.log(web1))
    result = shop.fab("deploy", **settings)
    assert result.returncode == 2, result.stdout + result.stderr
    for part in named:
        assert part in result.stderr
    assert snapshot(web1.inside("/srv/shop/shared")) == before
    assert shop.live(web1) == live and len(shop.log(web1)) == calls


def test_a_checkout_symlink_into_shared_stops_the_link_step_not_the_data(shop: Shop) -> None:
    """The repo itself makes ``var`` a link to ``shared/var``: replacing ``var/log`` with a
    link would ``rm -rf`` the shared logs through it. The deploy must stop instead."""
    web1 = shop.rig.host("web1")
    repo = shop.repo
    subprocess.run(["git", "-C", str(repo), "rm", "-q", "-r", "var"], check=True)
    os.symlink("/srv/shop/shared/var", repo / "var")
    subprocess.run(["git", "-C", str(repo), "add", "var"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "var as a link"], check=True)
    before, live = snapshot(web1.inside("/srv/shop/shared")), shop.live(web1)
    env_php = web1.inside("/srv/shop/shared/app/etc/env.php").read_bytes()
    result = shop.fab("deploy")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "refusing to link var/log" in result.stderr and "web1" in result.stderr
    assert snapshot(web1.inside("/srv/shop/shared")) == before
    assert web1.inside("/srv/shop/shared/app/etc/env.php").read_bytes() == env_php
    assert shop.live(web1) == live and shop.releases(web1) == [live]


def test_a_normal_deploy_keeps_env_php_and_media_byte_for_byte(shop: Shop) -> None:
    web1 = shop.rig.host("web1")
    before = snapshot(web1.inside("/srv/shop/shared"))
    shop.commit(label="v2")
    rel = shop.deploy().release
    assert snapshot(web1.inside("/srv/shop/shared")) == before
    env = shop.release_path(web1, rel, "app/etc/env.php")
    assert os.readlink(env) == "/srv/shop/shared/app/etc/env.php"
