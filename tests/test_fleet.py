"""Many hosts, one release: three real sshd hosts with separate filesystems."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from scenario import Shop

from tasks.deploy import DeployError

pytestmark = pytest.mark.real_hosts


@pytest.fixture
def fleet(rig3):
    return Shop(rig3)


def test_one_release_everywhere_switched_after_every_build(fleet: Shop) -> None:
    result = fleet.fab("deploy", "--hosts=web1,web2,web3", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    hosts = fleet.rig.hosts
    lives = {fleet.live(h) for h in hosts}
    assert len(lives) == 1 and None not in lives
    rel = lives.pop()
    for host in hosts:
        static = fleet.release_path(host, rel, "pub/static/deployed_version.txt")
        assert static.read_text().strip() == rel, "same --content-version on every host"
    last_build = max(e["t"] for h in hosts for e in fleet.log(h)
                     if e["cmd"] == "setup:static-content:deploy")
    first_switch = min(h.inside("/srv/shop/current").lstat().st_mtime for h in hosts)
    assert first_switch >= last_build, "a host switched before every host had built"
    assert "switch spread across hosts" in result.stdout
    for name in ("web1", "web2", "web3"):
        assert name in result.stdout


def test_schema_release_upgrades_once_on_the_primary(fleet: Shop) -> None:
    fleet.deploy()
    fleet.commit(modules={"Shop_Checkout": "2.1.0"})
    summary = fleet.deploy(primary="web2")
    assert summary.path == "maintenance"
    counts = {h.name: fleet.commands(h).count("setup:upgrade") for h in fleet.rig.hosts}
    assert counts == {"web1": 0, "web2": 1, "web3": 0}
    for host in fleet.rig.hosts:
        assert fleet.live(host) == summary.release
        assert not fleet.release_path(host, summary.release, "var/.maintenance.flag").exists()


def test_build_failure_on_one_host_switches_nobody(fleet: Shop) -> None:
    live = fleet.deploy().release
    fleet.commit(label="v2")
    web2 = fleet.rig.host("web2")
    fleet.faults(web2, {"setup:static-content:deploy": {"exit": 1,
                                                        "message": "Theme not found"}})
    with pytest.raises(DeployError) as err:
        fleet.deploy()
    assert "web2" in str(err.value) and "Theme not found" in str(err.value)
    assert "web1" not in str(err.value).split("failed on")[1].splitlines()[0]
    for host in fleet.rig.hosts:
        assert fleet.live(host) == live
        assert fleet.releases(host) == [live], f"{host.name} kept the failed release"
        assert not fleet.lock_exists(host)
    assert all("setup:db:status" not in fleet.commands(h)[-2:] for h in fleet.rig.hosts)


def test_switch_failure_on_one_host_puts_every_host_back(fleet: Shop) -> None:
    live = fleet.deploy().release
    fleet.commit(label="v2")
    web1, web3 = fleet.rig.host("web1"), fleet.rig.host("web3")
    fleet.faults(web1, {"app:config:status": {"sleep": 2.0}})  # the moment to break web3

    def break_web3() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(e["cmd"] == "setup:db:status" and e["t"] > started
                   for e in fleet.log(web1)):
                web3.sh("chmod 0555 /srv/shop")  # deployer can no longer create the link
                return
            time.sleep(0.02)

    started = time.time()
    breaker = threading.Thread(target=break_web3)
    breaker.start()
    try:
        with pytest.raises(DeployError, match=r"(?s)switch failed on web3.*back on its previous"):
            fleet.deploy()
    finally:
        breaker.join()
        web3.sh("chmod 0755 /srv/shop")
    for host in fleet.rig.hosts:
        assert fleet.live(host) == live, f"{host.name} not back on {live}"


def test_lock_on_one_host_refuses_the_whole_deploy(fleet: Shop) -> None:
    web3 = fleet.rig.host("web3")
    web3.inside("/srv/shop/deploy.lock").write_text(
        '{"who": "alice@laptop", "pid": 1, "since": "2020-01-01T00:00:00+00:00", '
        '"action": "deploy", "release": "x"}\n')
    result = fleet.fab("deploy")
    assert result.returncode == 1
    assert "alice@laptop" in result.stderr and "probably stale" in result.stderr
    assert "fab unlock --hosts=web3" in result.stderr
    for host in fleet.rig.hosts:
        assert fleet.releases(host) == []
        if host is not web3:
            assert not fleet.lock_exists(host)
    unlocked = fleet.fab("unlock", "--hosts=web3")
    assert unlocked.returncode == 0 and "alice@laptop" in unlocked.stdout
    assert fleet.fab("deploy").returncode == 0


def test_ad_hoc_tasks_run_once_per_host(fleet: Shop) -> None:
    fleet.deploy()
    result = fleet.fab("-H", "web1,web3", "db-status")
    assert result.returncode == 0, result.stderr
    assert [line.split("]")[0] for line in result.stdout.splitlines()] == ["[web1", "[web3"]
    assert "setup:db:status" not in fleet.commands(fleet.rig.host("web2"))[-2:]


def test_tasks_imported_into_a_users_own_fabfile(fleet: Shop) -> None:
    project = fleet.rig.base / "agency-project"
    project.mkdir()
    (project / "fabfile.py").write_text(
        "from fabric import task\n"
        "from tasks import deploy, releases\n\n\n"
        "@task\n"
        "def warm_cache(c):\n"
        "    \"\"\"The agency's own task.\"\"\"\n"
        "    print('warming')\n"
    )
    listed = fleet.fab("--list", project=project)
    assert {"deploy", "releases", "warm-cache"} <= set(listed.stdout.split())
    result = fleet.fab("deploy", "--hosts=web1,web2", "--quiet", project=project)
    assert result.returncode == 0, result.stdout + result.stderr
    web1, web2, web3 = fleet.rig.hosts
    assert fleet.live(web1) == fleet.live(web2) is not None
    assert fleet.releases(web3) == []
    assert result.stdout.count("switch spread across hosts") == 1


def test_ctrl_c_during_a_three_host_build_leaves_every_host_as_it_was(fleet: Shop) -> None:
    live = fleet.deploy().release
    fleet.commit(label="v2")
    for host in fleet.rig.hosts:
        fleet.faults(host, {"setup:di:compile": {"sleep": 30.0}})
    proc = fleet.fab_background("deploy")
    deadline = time.monotonic() + 60
    web1 = fleet.rig.host("web1")
    while time.monotonic() < deadline:
        running = web1.sh("ps -eo args").stdout.count("setup:di:compile")
        if running >= 3:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the three builds did not reach di:compile")
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 130, out
    for host in fleet.rig.hosts:
        assert fleet.live(host) == live
        assert fleet.releases(host) == [live]
        assert not fleet.lock_exists(host)
    time.sleep(0.3)
    assert "setup:di:compile" not in web1.sh("ps -eo args").stdout


def test_releases_table_is_shared_and_disagreement_is_loud(fleet: Shop) -> None:
    first = fleet.deploy().release
    fleet.commit(label="v2")
    second = fleet.deploy().release
    agreed = fleet.fab("releases")
    assert agreed.returncode == 0, agreed.stderr
    assert agreed.stdout.startswith("releases on web1, web2, web3:")
    assert agreed.stdout.count(second) == 1 and "DISAGREE" not in agreed.stdout
    fleet.rig.host("web2").sh(f"ln -sfn releases/{first} /srv/shop/current", user="deployer")
    split = fleet.fab("releases")
    assert split.stdout.count("releases on ") == 3
    assert "HOSTS DISAGREE" in split.stdout and first in split.stdout.splitlines()[-1]


def test_unreachable_host_is_named_and_no_host_is_touched(fleet: Shop) -> None:
    web1 = fleet.rig.host("web1")
    web3 = fleet.rig.host("web3")
    os.kill(web3.daemon_pid("sshd"), signal.SIGTERM)  # web3's sshd is down
    time.sleep(0.2)
    result = fleet.fab("deploy", "--hosts=web1,web3", timeout=60)
    assert result.returncode == 1
    assert "[web3] connect failed" in result.stderr, result.stderr
    assert fleet.releases(web1) == [] and not fleet.lock_exists(web1)
