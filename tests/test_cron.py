"""tasks/cron.py on real hosts: our crontab block, Magento's pinned block replaced, the pause.

Each host gets its own crontab spool (a bind mount inside its mount namespace), as on a
real cluster where every machine has its own ``/var/spool/cron``; the hosts share the
deploy user, so without it they would share one crontab. No cron daemon runs: the test
runs the crontab line itself (``sh -c`` as the deploy user, like cron does), so "no new
cron:run while paused" is checked at the exact moment the test chooses.
"""

from __future__ import annotations

import shlex

import pytest
from scenario import Shop, eventually, running

from fabric_magento_deploy import cron

pytestmark = pytest.mark.real_hosts()
SPOOL = "/var/spool/cron/crontabs"


def private_spool(shop: Shop) -> None:
    for host in shop.rig.hosts:
        host.sh("mkdir -p /srv/cronspool && chown root:crontab /srv/cronspool && "
                f"chmod 1730 /srv/cronspool && mount --bind /srv/cronspool {SPOOL}")


def crontab(shop: Shop, host) -> str:
    proc = host.sh("crontab -l", user=shop.rig.user, check=False)
    return proc.stdout if proc.returncode == 0 else ""


def our_command(shop: Shop, host) -> str:
    """The command of our crontab line (the schedule's five fields removed)."""
    lines = [ln for ln in crontab(shop, host).splitlines() if "cron:run" in ln]
    assert len(lines) == 1, lines
    return lines[0].split(None, 5)[5]


def fire(shop: Shop, host, *, background: bool = False) -> None:
    """What cron does each minute: ``/bin/sh -c <command>`` as the user, in its home."""
    command = f"sh -c {shlex.quote(our_command(shop, host))}"
    if background:
        command = f"setsid {command} </dev/null >/dev/null 2>&1 &"
    host.sh(command, user=shop.rig.user, check=False)  # grep -v exits 1 on no output


def cron_runs(shop: Shop, host) -> list[dict]:
    return [e for e in shop.log(host) if e["cmd"] == "cron:run"]


@pytest.fixture
def deployed(rig1) -> Shop:
    shop = Shop(rig1)
    private_spool(shop)
    shop.deploy()
    return shop


def test_install_twice_one_block_and_magentos_block_replaced(deployed: Shop) -> None:
    shop, host = deployed, deployed.rig.hosts[0]
    [h] = shop.hosts()
    settings = shop.settings()
    host.sh("(echo 'MAILTO=ops@example.com'; echo '0 3 * * * /usr/local/bin/backup') | crontab -",
            user=shop.rig.user)
    installed = host.sh("cd /srv/shop/current && php bin/magento cron:install",
                        user=shop.rig.user)
    assert "Crontab has been generated and saved" in installed.stdout
    release = f"/srv/shop/releases/{shop.live(host)}"
    assert f"{release}/bin/magento cron:run" in crontab(shop, host)  # pinned, not current

    first = cron.install(h, settings)
    assert first.changed
    assert first.notes == (f"replaced Magento's cron:install block for {release} (it pins "
                           "that directory; ours runs current)",)
    text = crontab(shop, host)
    assert text.startswith("MAILTO=ops@example.com\n0 3 * * * /usr/local/bin/backup\n")
    assert "#~ MAGENTO" not in text and release not in text
    assert text.count(cron.begin_marker(settings)) == 1
    assert "/srv/shop/current/bin/magento cron:run" in our_command(shop, host)

    second = cron.install(h, settings)
    assert (second.changed, second.notes) == (False, ())
    assert crontab(shop, host) == text

    fire(shop, host)  # the line works: cron:run ran from the live release
    assert [e["bp"] for e in cron_runs(shop, host)] == [release]


def test_pause_holds_new_runs_lets_the_running_one_finish_then_resume(deployed: Shop) -> None:
    shop, host = deployed, deployed.rig.hosts[0]
    [h] = shop.hosts()
    settings = shop.settings()
    cron.install(h, settings)
    shop.faults(host, {"cron:run": {"sleep": 3}})
    fire(shop, host, background=True)
    held = eventually(lambda: running(host, "cron:run"), "cron:run running")

    report = cron.pause(h, settings, wait_seconds=60)
    assert report.still_running == []  # it finished while pause waited
    assert [e["pid"] for e in cron_runs(shop, host)] == held
    assert "paused by a deploy" in cron.pause_state(h, settings)

    shop.faults(host, {})
    fire(shop, host)
    fire(shop, host)
    assert len(cron_runs(shop, host)) == 1  # paused: no new cron:run started

    assert cron.resume(h, settings).startswith(f"[{h.name}] cron resumed (paused by a deploy")
    fire(shop, host)
    assert len(cron_runs(shop, host)) == 2
    assert cron.resume(h, settings) == f"[{h.name}] cron was not paused"  # safe twice


def test_pause_names_a_run_still_going_and_does_not_kill_it(deployed: Shop) -> None:
    shop, host = deployed, deployed.rig.hosts[0]
    [h] = shop.hosts()
    settings = shop.settings()
    cron.install(h, settings)
    shop.faults(host, {"cron:run": {"sleep": 600}})
    fire(shop, host, background=True)
    php = eventually(lambda: running(host, "cron:run"), "cron:run running")
    try:
        report = cron.pause(h, settings, wait_seconds=0.5)
        assert set(php) <= {p.pid for p in report.still_running}
        assert running(host, "cron:run") == php  # still alive
        assert any("not killed" in line for line in report.lines())
    finally:
        for pid in php:
            host.sh(f"kill -KILL {pid}", check=False)
        cron.resume(h, settings)


def test_a_pause_left_behind_expires_by_itself(deployed: Shop) -> None:
    """A deploy killed before its ``finally``: the flag stays, cron comes back at its TTL."""
    shop, host = deployed, deployed.rig.hosts[0]
    [h] = shop.hosts()
    settings = shop.settings()
    cron.install(h, settings)
    cron.pause(h, settings, wait_seconds=0, ttl_seconds=3600)
    fire(shop, host)
    assert cron_runs(shop, host) == []
    assert host.inside("/srv/shop/cron.pause").exists()  # visible meanwhile
    assert cron.pause_state(h, settings) != ""
    # The flag's mtime is its expiry: move it into the past instead of waiting an hour.
    host.sh("touch -d '1 minute ago' /srv/shop/cron.pause", user=shop.rig.user)
    fire(shop, host)
    assert cron_runs(shop, host) != [], "cron:run after the pause expired"
    assert cron.pause_state(h, settings) == ""


def test_the_cron_tasks_from_the_command_line(deployed: Shop) -> None:
    """`fab cron-install` and `fab cron-resume` as an operator runs them, and a DEPLOY_PHP
    that cannot go into a crontab line refused by name before the crontab is touched."""
    shop, host = deployed, deployed.rig.hosts[0]
    first = shop.fab("cron-install")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "[web1] crontab: our cron line installed" in first.stdout
    text = crontab(shop, host)
    again = shop.fab("cron-install")
    assert "[web1] crontab: already up to date" in again.stdout and crontab(shop, host) == text

    [h] = shop.hosts()
    cron.pause(h, shop.settings(), wait_seconds=0, by="a deploy that was killed")
    noted = shop.fab("cron-install")
    assert "NOTE cron is paused" in noted.stdout and "a deploy that was killed" in noted.stdout
    resumed = shop.fab("cron-resume")
    assert resumed.returncode == 0 and "[web1] cron resumed" in resumed.stdout, resumed.stdout
    assert "[web1] cron was not paused" in shop.fab("cron-resume").stdout

    refused = shop.fab("cron-install", php="php -d date.timezone=%Z")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "DEPLOY_PHP" in refused.stderr and "'%'" in refused.stderr
    assert crontab(shop, host) == text
