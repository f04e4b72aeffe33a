"""A shop another tool deployed: Capistrano's and Deployer's release folders, no records.

Every real user starts from such a layout. The first deploy must treat the live release
it replaces as a release it can roll back to, order releases by when they were deployed
(never by folder name), prune only real releases, and leave anything else alone.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from datetime import datetime, timezone

import pytest
from scenario import Shop

pytestmark = [pytest.mark.real_hosts(web=True), pytest.mark.slow]

# Capistrano's YYYYMMDDHHMMSS of today: as text it sorts AFTER our ids of today
# ("20261201000001" > "20261201.100243.904", since "0" > "."), though it is older.
CAPISTRANO = datetime.now(timezone.utc).strftime("%Y%m%d") + "000001"


def visit(shop: Shop, host) -> tuple[str, int]:
    """What a customer gets: the page's release label, and the status of its stylesheet."""
    with urllib.request.urlopen(host.url("/"), timeout=10) as page:
        body = page.read().decode()
    label = re.search(r"^label=(.*)$", body, re.M)
    css = re.search(r'<link rel="stylesheet"[^>]* href="([^"]+)"', body)
    assert label and css, body
    try:
        with urllib.request.urlopen(host.url(css.group(1)), timeout=10) as asset:
            return label.group(1), asset.status
    except urllib.error.HTTPError as exc:
        return label.group(1), exc.code


def become_other_tools_layout(shop: Shop, host, tool: str) -> list[str]:
    """Rename our one release into ``tool``'s layout, drop our records and mirror.

    Capistrano: ``releases/<UTC timestamp>``, ``current`` an absolute link. Deployer 7:
    ``releases/1..N``, ``current`` relative. Older copies get older mtimes; a ``backup``
    folder (no ``app/etc``) is the newest entry of all. Returns the folders, oldest first.
    """
    ours = shop.live(host)
    names = [CAPISTRANO[:-1] + "0", CAPISTRANO] if tool == "capistrano" else ["9", "10"]
    live = names[-1]
    link = f"/srv/shop/releases/{live}" if tool == "capistrano" else f"releases/{live}"
    host.sh(
        f"cd /srv/shop/releases && mv {ours} {live} && cp -a {live} {names[0]}"
        f" && touch -d '3 days ago' {names[0]} && touch -d '2 days ago' {live}"
        f" && mkdir backup && touch backup/dump.sql"
        f" && rm -rf /srv/shop/history /srv/shop/repo.git"
        f" && ln -sfn {link} /srv/shop/current && chown -R deployer: /srv/shop",
    )
    return names


@pytest.mark.parametrize("tool", ["capistrano", "deployer"])
def test_deploy_then_rollback_on_a_layout_left_by_another_tool(web_rig1, tool: str) -> None:
    shop = Shop(web_rig1, label="A")
    web1 = web_rig1.host("web1")
    shop.deploy(opcache="fcgi")
    old, live = become_other_tools_layout(shop, web1, tool)
    web1.fpm_reload()  # the old tool's deploy ended with a reload: serving the old paths
    assert visit(shop, web1) == ("A", 200)

    shop.commit(label="B")
    result = shop.fab("deploy", "--quiet", opcache="fcgi")
    assert result.returncode == 0, result.stdout + result.stderr
    ours = shop.live(web1)
    assert ours not in (old, live)
    assert visit(shop, web1) == ("B", 200)
    adopted = json.loads(web1.inside(f"/srv/shop/history/{live}.json").read_text())
    assert adopted["status"] == "previous" and adopted["deployed_by"] == "another tool"
    assert adopted["commit"] == shop.commits[0], "commit read from the other tool's REVISION"
    listing = shop.fab("releases")
    assert listing.returncode == 0, listing.stderr
    rows = [word for word in listing.stdout.split() if word in (ours, live, old)]
    assert rows == [ours, live, old], "newest deploy first: " + listing.stdout
    assert "not releases (no app/etc, no record; never pruned): backup" in listing.stdout

    back = shop.fab("rollback", opcache="fcgi")
    assert back.returncode == 0, back.stdout + back.stderr
    assert shop.live(web1) == live
    assert visit(shop, web1) == ("A", 200)

    shop.commit(label="C")
    again = shop.fab("deploy", "--quiet", opcache="fcgi", keep_releases="1")
    assert again.returncode == 0, again.stdout + again.stderr
    newest = shop.live(web1)
    left = set(shop.releases(web1))
    assert left == {newest, live, "backup"}, "keeps current + the release it replaced"
    assert "not releases" in again.stdout and "backup" in again.stdout
    assert web1.inside("/srv/shop/releases/backup/dump.sql").exists()


def test_rollback_is_refused_across_a_schema_release_after_adoption(web_rig1) -> None:
    shop = Shop(web_rig1, label="A")
    web1 = web_rig1.host("web1")
    shop.deploy(opcache="fcgi")
    become_other_tools_layout(shop, web1, "capistrano")
    web1.fpm_reload()  # the old tool's deploy ended with a reload: serving the old paths
    assert visit(shop, web1) == ("A", 200)  # the live shop works (the check asks it first)
    shop.commit(label="B", modules={"Shop_Catalog": "1.1.0"})
    assert shop.fab("deploy", "--quiet", opcache="fcgi").returncode == 0
    refused = shop.fab("rollback", opcache="fcgi")
    assert refused.returncode == 1 and "changed the database" in refused.stderr
    assert visit(shop, web1) == ("B", 200)


@pytest.mark.real_hosts(web=False)
def test_deployers_shared_maintenance_ip_survives_a_schema_deploy(rig1) -> None:
    """Deployer's recipe shares ``var/.maintenance.ip``: live and new release then hold
    one file, which must not be "copied onto itself" (cp fails: same file)."""
    shop = Shop(rig1)
    web1 = rig1.host("web1")
    shared = {"shared_files": "app/etc/env.php var/.maintenance.ip"}
    ip = web1.inside("/srv/shop/shared/var/.maintenance.ip")
    ip.parent.mkdir(parents=True, exist_ok=True)
    ip.write_text("10.0.0.1,192.168.1.20")
    web1.sh("chown -R deployer: /srv/shop/shared")
    shop.deploy(**shared)
    shop.commit(modules={"Shop_Catalog": "1.1.0"})
    summary = shop.deploy(**shared)
    assert summary.path == "maintenance"
    assert ip.read_text() == "10.0.0.1,192.168.1.20"
    assert shop.release_path(web1, summary.release, "var/.maintenance.ip").is_symlink()


@pytest.mark.real_hosts(web=False)
def test_current_pointing_outside_releases_is_refused_before_anything_changes(rig1) -> None:
    shop = Shop(rig1)
    web1 = rig1.host("web1")
    web1.sh("mkdir -p /srv/legacy/app/etc && ln -s /srv/legacy /srv/shop/current"
            " && chown -R deployer: /srv/shop /srv/legacy")
    result = shop.fab("deploy")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "points at /srv/legacy, outside /srv/shop/releases/" in result.stderr
    assert "adopting.md" in result.stderr
    assert os.readlink(web1.inside("/srv/shop/current")) == "/srv/legacy"
    assert shop.log(web1) == [] and shop.releases(web1) == []


@pytest.mark.real_hosts(web=False)
def test_step_tasks_act_on_the_newest_release_not_the_last_name(rig1) -> None:
    shop = Shop(rig1)
    web1 = rig1.host("web1")
    shop.deploy()
    old, live = become_other_tools_layout(shop, web1, "capistrano")
    shop.commit(label="v2")
    result = shop.fab("-H", "web1", "prepare-release", "build", "switch-symlink")
    assert result.returncode == 0, result.stdout + result.stderr
    prepared = re.search(r"prepared release (\S+)", result.stdout).group(1)
    assert f"built release {prepared}" in result.stdout
    assert shop.live(web1) == prepared and sorted([prepared, live])[-1] == live
