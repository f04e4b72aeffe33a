"""Pure planning: commands, pruning, rollback decisions, Magento output parsing."""

from __future__ import annotations

import dataclasses
import shlex

import pytest

from fabric_magento_deploy import build, magento, source, switch
from fabric_magento_deploy.release import (
    FAILED,
    LIVE,
    PREVIOUS,
    Folder,
    ReleaseRecord,
    Releases,
    new_release_id,
    order,
    plan_prune,
)
from fabric_magento_deploy.rollback import RollbackRefused, plan
from fabric_magento_deploy.settings import Settings

S = Settings(deploy_path="/srv/shop", repo="/repos/shop's.git", themes=("Magento/luma",),
             locales=("en_US", "nl_NL"), static_jobs=4, shared_dirs=("pub/media",))


def test_release_ids_sort_by_time_and_differ_within_a_second() -> None:
    from datetime import datetime, timezone
    a = new_release_id(datetime(2026, 1, 2, 3, 4, 5, 1000, tzinfo=timezone.utc))
    b = new_release_id(datetime(2026, 1, 2, 3, 4, 5, 2000, tzinfo=timezone.utc))
    c = new_release_id(datetime(2026, 1, 2, 3, 4, 6, 0, tzinfo=timezone.utc))
    assert a == "20260102.030405.001" and a < b < c


def test_build_order_and_flags() -> None:
    steps = build.build(S, "R1")
    assert [s.name for s in steps] == ["composer install", "di:compile", "dump-autoload",
                                       "static content frontend", "static content adminhtml"]
    assert "install --no-dev --prefer-dist --no-interaction" in steps[0].command
    assert "dump-autoload -o" in steps[2].command
    argv = shlex.split(steps[3].command.split("&& ", 1)[1])
    assert argv[:4] == ["php", "bin/magento", "setup:static-content:deploy", "-f"]
    assert "--content-version=R1" in argv and "--jobs=4" in argv
    assert "--theme=Magento/luma" in argv and argv[-3:-1] == ["en_US", "nl_NL"]


def static_argvs(**settings: object) -> list[list[str]]:
    s = Settings(deploy_path="/srv/shop", **settings)  # type: ignore[arg-type]
    return [shlex.split(step.command.split("&& ", 1)[1])[3:-1]
            for step in build.static_content(s, "20261201.100055.601")]


def test_static_version_is_digits_only_so_nginx_strips_it() -> None:
    assert build.static_version("20261201.100055.601") == "20261201100055601"
    assert static_argvs() == [["-f", "--content-version=20261201100055601", "en_US"]]


def test_a_frontend_theme_alone_still_builds_the_admin_theme() -> None:
    runs = static_argvs(themes=("frontend:Hyva/default",), locales=("en_US", "de_DE"))
    assert [r[2:] for r in runs] == [
        ["--area=frontend", "--theme=Hyva/default", "en_US", "de_DE"],
        ["--area=adminhtml", "--theme=Magento/backend", "en_US", "de_DE"]]
    assert len({r[1] for r in runs}) == 1, "one content version for every run"


def test_admin_locales_and_themes_per_area_or_none() -> None:
    runs = static_argvs(locales=("de_DE", "zh_Hans_CN", "adminhtml:en_US"))
    assert [r[2:] for r in runs] == [["--area=frontend", "de_DE", "zh_Hans_CN"],
                                     ["--area=adminhtml", "en_US"]]
    runs = static_argvs(themes=("Hyva/default", "adminhtml:none"),
                        static_args=("--strategy=compact", "--no-html-minify"))
    assert [r[2:] for r in runs] == [["--strategy=compact", "--no-html-minify",
                                      "--area=frontend", "--theme=Hyva/default", "en_US"]]


def test_releases_are_ordered_by_deploy_time_not_name() -> None:
    folders = [Folder("20261201095728", 1000.0, True),   # Capistrano, deployed first
               Folder("9", 1100.0, True), Folder("10", 1200.0, True),  # Deployer counter
               Folder("20261201.100243.904", 1.0, True),  # ours: the record's time counts
               Folder("backup", 9999.0, False)]            # not a release: no app/etc
    records = {"20261201.100243.904": ReleaseRecord(
        "20261201.100243.904", status=LIVE, started="1970-01-01T00:21:40+00:00")}
    found = order(folders, records)
    assert found.ordered == ("20261201095728", "9", "10", "20261201.100243.904")
    assert found.foreign == ("backup",)
    assert plan_prune(found.ordered, records, keep=1,
                      protected={"20261201.100243.904", "10"}).remove == ("20261201095728", "9")


def test_rollback_after_adopting_goes_back_to_the_other_tools_release() -> None:
    records = {"20261201095728": rec("r1", PREVIOUS), "20261201.100243.904": rec("r2", LIVE)}
    records = {k: ReleaseRecord(k, status=v.status, started=v.started)
               for k, v in records.items()}
    present = Releases(("20261201095728", "20261201.100243.904"), (), {})
    assert plan("20261201.100243.904", records, present).target == "20261201095728"


def test_repo_with_quote_is_quoted() -> None:
    cmd = source.update_mirror(S).command
    assert shlex.quote("/repos/shop's.git") in cmd


def test_switch_is_rename_of_a_temporary_link() -> None:
    cmd = switch.switch(S, "R2").command
    assert "ln -sfn releases/R2 /srv/shop/.current-R2.tmp" in cmd
    assert "mv -Tf /srv/shop/.current-R2.tmp /srv/shop/current" in cmd


def rec(rid: str, status: str, schema: bool = False) -> ReleaseRecord:
    """A record whose deploy started at second N of the day for release ``rN``."""
    return ReleaseRecord(rid, status=status, setup_upgrade=schema,
                         started=f"2026-12-01T10:00:{int(rid[1:]):02d}+00:00")


def on_disk(*names: str) -> Releases:
    return Releases(names, (), {})


def test_prune_keeps_newest_current_and_previous() -> None:
    rels = ["r1", "r2", "r3", "r4", "r5"]
    records = {r: rec(r, PREVIOUS) for r in rels} | {"r5": rec("r5", LIVE)}
    p = plan_prune(rels, records, keep=2, protected={"r5", "r1"})
    assert p.remove == ("r2", "r3")


def test_prune_removes_old_failed_keeps_new_failed() -> None:
    rels = ["r1", "r2", "r3", "r4"]
    records = {"r1": rec("r1", PREVIOUS), "r2": rec("r2", FAILED), "r3": rec("r3", LIVE),
               "r4": rec("r4", FAILED)}
    p = plan_prune(rels, records, keep=5, protected={"r3", "r1"})
    assert p.remove == ("r2",)


def test_rollback_picks_previous_live_skipping_failed() -> None:
    records = {"r1": rec("r1", PREVIOUS), "r2": rec("r2", FAILED), "r3": rec("r3", LIVE)}
    assert plan("r3", records, on_disk("r1", "r2", "r3")).target == "r1"


def test_rollback_refused_across_schema_change_names_release() -> None:
    records = {"r1": rec("r1", PREVIOUS), "r2": rec("r2", LIVE, schema=True)}
    with pytest.raises(RollbackRefused, match="r2"):
        plan("r2", records, on_disk("r1", "r2"))
    forced = plan("r2", records, on_disk("r1", "r2"), force=True)
    assert forced.target == "r1" and forced.schema_movers == ("r2",)


def test_rollback_counts_a_failed_upgrade_as_schema_change() -> None:
    records = {"r1": rec("r1", PREVIOUS), "r2": rec("r2", FAILED, schema=True),
               "r3": rec("r3", LIVE)}
    with pytest.raises(RollbackRefused, match="r2"):
        plan("r3", records, on_disk("r1", "r3"))


def test_rollback_never_to_failed_or_missing() -> None:
    records = {"r1": rec("r1", FAILED), "r2": rec("r2", LIVE)}
    with pytest.raises(RollbackRefused, match="failed"):
        plan("r2", records, on_disk("r1", "r2"), to="r1")
    with pytest.raises(RollbackRefused, match="not on disk"):
        plan("r2", {"r0": rec("r0", PREVIOUS), **records}, on_disk("r1", "r2"), to="r0")


DB_AHEAD = """         Shop_Catalog     schema:       1.1.0  ->  1.0.0
         Shop_Catalog       data:       1.1.0  ->  1.0.0      The module code base doesn't \
match the DB schema and data.
Some modules use code versions newer or older than the database.
Run 'setup:upgrade' to update your DB schema and data."""


def test_modules_ahead_parsed_from_db_status() -> None:
    ahead = magento.modules_ahead(DB_AHEAD)
    assert ahead[0] == "Shop_Catalog schema 1.1.0 in the database > 1.0.0 in the code"
    assert magento.modules_ahead("    Shop_Catalog schema:   1.0.0  ->  1.1.0") == []


def test_dry_run_of_a_local_build_builds_here_and_ships() -> None:
    from fabric_magento_deploy.deploy import dry_run

    local = dataclasses.replace(S, build="local", build_dir="/var/cache/build")
    text = dry_run(local, ["web1", "web2"])
    here, ship = text.split("# to web1, web2 in parallel: ship")
    assert "composer install" in here and "/var/cache/build/releases/<release-id>" in here
    assert "composer" not in ship and "setup:di:compile" not in ship
    assert "rsync -rlpc --link-dest=/srv/shop/releases/<live>" in ship
    assert "link shared" in ship and "verify build" in ship
