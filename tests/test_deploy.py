"""Deploy scenarios on one real sshd host, with real git, composer and PHP."""

from __future__ import annotations

import json

import pytest
from scenario import Gate, Shop, always_resolves, watch

from fabric_magento_deploy.deploy import DeployError
from fabric_magento_deploy.magento import DatabaseAheadError

pytestmark = pytest.mark.real_hosts


@pytest.fixture
def one(rig1):
    return Shop(rig1)


def record(shop: Shop, host, release: str) -> dict:
    return json.loads(host.inside(f"/srv/shop/history/{release}.json").read_text())


def test_first_deploy_builds_links_and_switches_without_maintenance(one: Shop) -> None:
    web1 = one.rig.host("web1")
    summary = one.deploy()
    rel = summary.release
    assert one.live(web1) == rel and summary.path == "zero-downtime"
    path = one.release_path(web1, rel)
    assert (path / "REVISION").read_text().strip() == one.commits[-1]
    assert (path / "vendor/autoload.php").is_file()
    assert (path / "generated/metadata").is_dir()
    version = (path / "pub/static/deployed_version.txt").read_text().strip()
    assert version == rel.replace(".", "") and version.isdigit()
    assert (path / "pub/media").is_symlink()
    assert str((path / "app/etc/env.php").readlink()) == "/srv/shop/shared/app/etc/env.php"
    assert not (path / ".git").exists()
    cmds = one.commands(web1)
    assert cmds.index("setup:di:compile") < cmds.index("setup:static-content:deploy")
    assert "setup:upgrade" not in cmds and "setup:db:status" in cmds
    rec = record(one, web1, rel)
    assert rec["status"] == "live" and rec["commit"] == one.commits[-1]
    assert not rec["setup_upgrade"] and "composer install" in rec["steps"]
    assert not one.lock_exists(web1)


def test_code_only_release_switches_with_zero_downtime(one: Shop) -> None:
    web1 = one.rig.host("web1")
    first = one.deploy().release
    one.commit(label="v2")
    flag = one.release_path(web1, first, "var/.maintenance.flag")
    with watch([flag]) as seen, always_resolves(
            web1.inside("/srv/shop/current/pub/index.php")) as checks:
        second = one.deploy()
    assert checks[0] > 1000 and checks[1] == 0, f"current missing in {checks[1]} of {checks[0]}"
    assert second.path == "zero-downtime" and second.maintenance_seconds is None
    assert not seen[flag], "maintenance must not be touched when nothing is pending"
    assert one.live(web1) == second.release
    assert record(one, web1, first)["status"] == "previous"


def test_schema_release_takes_a_maintenance_window_in_both_releases(one: Shop) -> None:
    web1 = one.rig.host("web1")
    first = one.deploy().release
    one.commit(label="v2", modules={"Shop_Catalog": "1.1.0"})
    one.faults(web1, {"setup:upgrade": {"sleep": 1.0}})
    gate = Gate(one.rig, held=["web1"], program="php", arg="setup:upgrade")
    old_flag = one.release_path(web1, first, "var/.maintenance.flag")

    def flags() -> tuple[bool, bool]:
        new = [r for r in one.releases(web1) if r != first]
        return old_flag.exists(), len(new) == 1 and one.release_path(
            web1, new[0], "var/.maintenance.flag").exists()

    with gate.look_when_held(web1, flags) as seen:
        summary = one.deploy(php=gate.command)
    rel = summary.release
    assert summary.path == "maintenance"
    assert seen == [(True, True)], "both releases must show maintenance during the upgrade"
    assert not old_flag.exists()
    assert not one.release_path(web1, rel, "var/.maintenance.flag").exists()
    upgrades = [e for e in one.log(web1) if e["cmd"] == "setup:upgrade"]
    assert len(upgrades) == 1 and "--keep-generated" in upgrades[0]["argv"]
    assert upgrades[0]["bp"].endswith(f"/releases/{rel}")
    assert (one.release_path(web1, rel, "generated/metadata")).is_dir()
    assert (one.release_path(web1, rel, "pub/static/deployed_version.txt")).is_file()
    assert summary.upgrade_seconds >= 1.0
    assert summary.maintenance_seconds >= summary.upgrade_seconds
    assert record(one, web1, rel)["setup_upgrade"] is True


def test_config_change_alone_takes_the_maintenance_path(one: Shop) -> None:
    one.deploy()
    one.commit(config_system={"default": {"web": {"cookie": {"cookie_lifetime": "7200"}}}})
    summary = one.deploy()
    assert summary.path == "maintenance"
    assert one.commands(one.rig.host("web1")).count("setup:upgrade") == 1


def test_code_older_than_database_is_refused_before_maintenance(one: Shop) -> None:
    web1 = one.rig.host("web1")
    old_commit = one.commits[-1]
    one.commit(modules={"Shop_Catalog": "1.1.0"})
    live = one.deploy().release
    with pytest.raises(DatabaseAheadError, match="Shop_Catalog"):
        one.deploy(ref=old_commit)
    assert one.live(web1) == live
    assert one.releases(web1) == [live]
    assert not one.release_path(web1, live, "var/.maintenance.flag").exists()
    assert not one.lock_exists(web1)


def test_build_failure_leaves_the_live_release_alone(one: Shop) -> None:
    web1 = one.rig.host("web1")
    live = one.deploy().release
    one.commit(label="broken")
    one.faults(web1, {"setup:di:compile": {"exit": 1, "message": "Fatal: class not found"}})
    with pytest.raises(DeployError, match=r"(?s)web1.*di:compile.*class not found"):
        one.deploy()
    assert one.live(web1) == live
    assert one.releases(web1) == [live]
    failed = [json.loads(p.read_text()) for p in web1.inside("/srv/shop/history").iterdir()]
    assert sorted(r["status"] for r in failed) == ["failed", "live"]
    assert not one.lock_exists(web1)


def test_failed_upgrade_keeps_maintenance_on_and_says_so(one: Shop) -> None:
    web1 = one.rig.host("web1")
    live = one.deploy().release
    one.commit(modules={"Shop_Catalog": "1.1.0"})
    one.faults(web1, {"setup:upgrade": {"exit": 1, "message": "SQLSTATE[42S01]: table exists",
                                        "when": "after"}})  # the schema moved, then it failed
    with pytest.raises(DeployError, match="HALF-UPGRADED"):
        one.deploy()
    assert one.live(web1) == live
    assert one.release_path(web1, live, "var/.maintenance.flag").exists()
    assert not one.lock_exists(web1)


def test_an_upgrade_failing_before_the_database_moved_lifts_maintenance(one: Shop) -> None:
    """setup:upgrade fails at once (a patch class that does not exist): setup:db:status
    says what it said before, so the deploy lifts its maintenance, removes the new
    release and the live one serves on; the next deploy upgrades as usual."""
    web1 = one.rig.host("web1")
    live = one.deploy().release
    one.commit(modules={"Shop_Catalog": "1.1.0"})
    schema = {k: v for k, v in one.db_state().items() if k in ("setup_module", "patch_list")}
    one.faults(web1, {"setup:upgrade": {"exit": 1, "message": 'Class "Shop\\Catalog\\Setup'
                                        '\\Patch\\Data\\AddLabel" does not exist'}})
    with pytest.raises(DeployError, match="BEFORE changing the database") as failed:
        one.deploy()
    message = str(failed.value)
    assert "maintenance lifted, the live release serves as before" in message, message
    assert one.live(web1) == live and one.releases(web1) == [live]
    assert not one.release_path(web1, live, "var/.maintenance.flag").exists()
    assert {k: v for k, v in one.db_state().items() if k in schema} == schema
    assert not one.lock_exists(web1)
    one.faults(web1, {})
    assert one.deploy().path == "maintenance"


def test_operator_maintenance_is_left_on(one: Shop) -> None:
    web1 = one.rig.host("web1")
    live = one.deploy().release
    web1.sh(f"mkdir -p /srv/shop/releases/{live}/var && "
            f"touch /srv/shop/releases/{live}/var/.maintenance.flag", user="deployer")
    one.commit(modules={"Shop_Catalog": "1.1.0"})
    rel = one.deploy().release
    assert one.release_path(web1, rel, "var/.maintenance.flag").exists()
    assert one.release_path(web1, live, "var/.maintenance.flag").exists()


def test_shared_media_is_never_lost(one: Shop) -> None:
    web1 = one.rig.host("web1")
    media = web1.inside("/srv/shop/shared/pub/media")
    media.mkdir(parents=True)
    (media / "customer-upload.jpg").write_text("precious")
    web1.sh("chown -R deployer: /srv/shop/shared")
    one.commit(files={"pub/media/logo.svg": "<svg/>"})
    rel = one.deploy().release
    assert (media / "customer-upload.jpg").read_text() == "precious"
    assert (media / "logo.svg").read_text() == "<svg/>"
    assert one.release_path(web1, rel, "pub/media").is_symlink()


def test_old_releases_are_pruned_but_current_and_previous_kept(one: Shop) -> None:
    web1 = one.rig.host("web1")
    rels = []
    for n in range(4):
        one.commit(label=f"v{n + 2}")
        rels.append(one.deploy(keep_releases="2").release)
    assert one.releases(web1) == rels[-2:]
    one.commit(label="v9")
    rels.append(one.deploy(keep_releases="2").release)
    assert one.releases(web1) == rels[-2:]
    assert web1.inside(f"/srv/shop/history/{rels[0]}.json").exists(), "records survive pruning"


def test_release_with_read_only_files_is_pruned_all_the_same(one: Shop) -> None:
    web1 = one.rig.host("web1")
    doomed = one.deploy(keep_releases="2").release
    one.commit(label="v2")
    kept = one.deploy(keep_releases="2").release
    # Read-only directories, as some builds and vendor packages leave them: owned by the
    # deploy user, so only its own `chmod -R u+w` lets `rm -rf` empty them.
    web1.sh(f"chmod -R a-w /srv/shop/releases/{doomed}")
    denied = web1.sh(f"rm -rf /srv/shop/releases/{doomed}/generated", user="deployer",
                     check=False)
    assert denied.returncode != 0, "the fixture must need `chmod u+w` to be removable"
    assert web1.sh(f"stat -c %U /srv/shop/releases/{doomed}/generated").stdout.strip() == \
        "deployer"
    one.commit(label="v3")
    summary = one.deploy(keep_releases="2")
    assert one.releases(web1) == [kept, summary.release]
    assert not one.release_path(web1, doomed).exists(), f"{doomed} was not removed"
    assert any(doomed in note and "removed" in note for note in summary.notes), summary.text()
    assert not any("prun" in w for w in summary.warnings), summary.warnings


def test_dry_run_prints_the_plan_and_changes_nothing(one: Shop) -> None:
    web1 = one.rig.host("web1")
    before = sorted(str(p.relative_to(web1.inside("/srv")))
                    for p in web1.inside("/srv").rglob("*"))
    result = one.fab("deploy", "--dry")
    assert result.returncode == 0, result.stderr
    assert "setup:static-content:deploy" in result.stdout and "setup:upgrade" in result.stdout
    assert one.releases(web1) == []
    assert not one.lock_exists(web1), "a dry run took the lock"
    assert not web1.inside("/srv/shop/repo.git").exists(), "a dry run fetched the mirror"
    assert not web1.inside("/srv/shop/history").exists(), "a dry run wrote a record"
    assert one.log(web1) == [], "a dry run ran bin/magento"
    after = sorted(str(p.relative_to(web1.inside("/srv"))) for p in web1.inside("/srv").rglob("*"))
    assert after == before


@pytest.mark.parametrize(("key", "value"), [
    ("DEPLOY_KEEP_RELEASES", "0"),
    ("DEPLOY_PATH", "relative/path"),
    ("DEPLOY_PATH", "/"),
    ("DEPLOY_OPCACHE", "magic"),
])
def test_bad_settings_give_one_error_and_touch_no_host(one: Shop, key: str, value: str) -> None:
    web1 = one.rig.host("web1")
    before = sorted(p.name for p in web1.inside("/srv/shop").iterdir())
    result = one.fab("deploy", **{key: value})
    assert result.returncode == 2
    assert key in result.stderr and repr(value) in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in web1.inside("/srv/shop").iterdir()) == before
    assert one.log(web1) == []


def test_cli_deploy_and_single_tasks(one: Shop) -> None:
    web1 = one.rig.host("web1")
    result = one.fab("deploy", "--hosts=web1", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    rel = one.live(web1)
    assert f"release {rel}" in result.stdout and "zero-downtime" in result.stdout
    status = one.fab("db-status", "--hosts=web1")
    assert status.returncode == 0 and "up to date" in status.stdout
    listing = one.fab("releases")
    assert rel in listing.stdout and "live" in listing.stdout


def test_step_by_step_tasks_do_what_deploy_does(one: Shop) -> None:
    web1 = one.rig.host("web1")
    live = one.deploy().release
    one.commit(label="v2", modules={"Shop_Catalog": "1.1.0"})
    result = one.fab("-H", "web1", "prepare-release", "build", "db-status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pending schema/data" in result.stdout
    new = one.releases(web1)[-1]
    assert new != live and one.live(web1) == live
    assert one.release_path(web1, new, "generated/metadata").is_dir()
    upgrade = one.fab("-H", "web1", "maybe-upgrade")
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert one.release_path(web1, live, "var/.maintenance.flag").exists()
    assert one.release_path(web1, new, "var/.maintenance.flag").exists()
    assert one.commands(web1).count("setup:upgrade") == 1
    finish = one.fab("-H", "web1", "switch-symlink", "flush-opcache", "maintenance-off")
    assert finish.returncode == 0, finish.stdout + finish.stderr
    assert one.live(web1) == new
    assert not one.release_path(web1, new, "var/.maintenance.flag").exists()
    assert "OPcache not flushed" in finish.stdout  # DEPLOY_OPCACHE=none in this scenario
    assert one.fab("-H", "web1", "maintenance-on").returncode == 0
    assert one.release_path(web1, new, "var/.maintenance.flag").exists()
    pruned = one.fab("-H", "web1", "prune-releases", "--dry")
    assert pruned.returncode == 0 and "nothing to prune" in pruned.stdout
    assert one.fab("-H", "web1", "db-status").stdout.strip().endswith("zero-downtime switch")


def test_maintenance_allow_list_is_carried_into_the_new_release(one: Shop) -> None:
    web1 = one.rig.host("web1")
    live = one.deploy().release
    web1.sh("cd /srv/shop/current && php bin/magento maintenance:allow-ips 10.1.2.3 10.9.0.0/16",
            user="deployer")
    allowed = one.release_path(web1, live, "var/.maintenance.ip").read_text()
    assert allowed == "10.1.2.3,10.9.0.0/16"
    one.commit(modules={"Shop_Catalog": "1.1.0"})
    gate = Gate(one.rig, held=["web1"], program="php", arg="setup:upgrade")

    def new_release() -> tuple[bool, str | None]:
        new = [r for r in one.releases(web1) if r != live]
        ip = one.release_path(web1, new[0], "var/.maintenance.ip") if len(new) == 1 else None
        flag = ip is not None and ip.with_name(".maintenance.flag").exists()
        return flag, ip.read_text() if ip is not None and ip.exists() else None

    with gate.look_when_held(web1, new_release) as seen:
        summary = one.deploy(php=gate.command)
    assert summary.path == "maintenance"
    assert seen, "setup:upgrade never started"
    assert seen[0] == (True, allowed), "the new release lacked the flag or the allow list"
    status = web1.sh("cd /srv/shop/current && php bin/magento maintenance:status",
                     user="deployer").stdout
    assert one.live(web1) == summary.release
    assert "List of exempt IP-addresses: 10.1.2.3 10.9.0.0/16" in status, status


def test_prune_releases_task_removes_for_real_and_only_says_so_when_dry(one: Shop) -> None:
    web1 = one.rig.host("web1")
    rels = []
    for n in range(4):
        one.commit(label=f"v{n + 2}")
        rels.append(one.deploy(keep_releases="10").release)
    assert one.releases(web1) == rels
    dry = one.fab("-H", "web1", "prune-releases", "--dry", keep_releases="1")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"would remove {rels[0]}, {rels[1]}" in dry.stdout
    assert one.releases(web1) == rels
    real = one.fab("-H", "web1", "prune-releases", keep_releases="1")
    assert real.returncode == 0, real.stdout + real.stderr
    assert f"removed {rels[0]}, {rels[1]}" in real.stdout
    # keep=1 keeps the newest; the one before it is current's rollback target
    assert one.releases(web1) == rels[2:]
    assert one.live(web1) == rels[3]
    assert not one.lock_exists(web1)
    again = one.fab("-H", "web1", "prune-releases", keep_releases="1")
    assert again.returncode == 0 and "nothing to prune" in again.stdout
