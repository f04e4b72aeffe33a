"""Cron during a deploy: a schema release pauses our crontab line on every host before
maintenance goes on and resumes it after maintenance is lifted, also when it fails.
The crontab line itself is run by the test every 0.1 s (a faster cron daemon)."""

from __future__ import annotations

import threading

import pytest
from scenario import Shop

from fabric_magento_deploy import cron
from fabric_magento_deploy.deploy import DeployError

pytestmark = pytest.mark.real_hosts

STOP = "/srv/log/cron-loop.stop"
SEEN = "/srv/log/cron-loop"


def cron_loop(shop: Shop) -> threading.Thread:
    """Run our crontab line on web1 until told to stop; per run, one line: maintenance on
    before it, cron:run started by it (0/1), maintenance on after it."""
    line = cron.cron_line(shop.settings()).split(None, 5)[5]
    flag = "[ -e /srv/shop/current/var/.maintenance.flag ] && echo 1 || echo 0"
    runs = "grep -c '\"cron:run\"' /srv/log/magento.jsonl 2>/dev/null || true"
    web1 = shop.rig.host("web1")
    # As cron does: `sh -c LINE` per run. The loop itself must not name cron:run in its
    # arguments, or the deploy's pause would take it for a cron:run still running.
    web1.inside("/srv/log/cron-line").write_text(line)
    script = (f"end=$((SECONDS+120)); while [ $SECONDS -lt $end ] && [ ! -e {STOP} ]; do "
              f"before=$({flag}); n=$({runs}); sh -c \"$(cat /srv/log/cron-line)\" "
              f">/dev/null 2>&1; m=$({runs}); "
              f"echo \"$before $((m-n)) $({flag})\" >> {SEEN}; sleep 0.1; done")
    thread = threading.Thread(target=web1.sh, args=(script,), kwargs={"user": "deployer"})
    thread.start()
    return thread


def runs(shop: Shop) -> list[tuple[int, int, int]]:
    text = shop.rig.host("web1").inside(SEEN).read_text()
    return [tuple(int(x) for x in line.split()) for line in text.splitlines()]  # type: ignore


def stop(shop: Shop, thread: threading.Thread) -> None:
    shop.rig.host("web1").sh(f"touch {STOP}", user="deployer")
    thread.join(timeout=60)


@pytest.mark.parametrize("upgrade_fails", [False, True], ids=["upgrade", "failed-upgrade"])
def test_no_cron_run_starts_during_the_maintenance_window(rig3, upgrade_fails: bool) -> None:
    shop = Shop(rig3)
    shop.deploy()
    shop.commit(label="v2", modules={"Shop_Catalog": "1.1.0"})  # a schema release
    web1 = rig3.host("web1")
    shop.faults(web1, {"setup:upgrade": {"sleep": 1.5, **({"exit": 1, "message": "boom"}
                                                           if upgrade_fails else {})}})
    thread = cron_loop(shop)
    try:
        # wait until the loop has run cron at least once before the deploy
        for _ in range(200):
            if web1.inside(SEEN).exists() and any(r[1] for r in runs(shop)):
                break
            threading.Event().wait(0.05)
        if upgrade_fails:
            with pytest.raises(DeployError):
                shop.deploy()
        else:
            summary = shop.deploy()
            assert summary.path == "maintenance"
        before = len(runs(shop))
        for _ in range(200):  # resumed: cron runs again
            if any(r[1] for r in runs(shop)[before:]):
                break
            threading.Event().wait(0.05)
    finally:
        stop(shop, thread)
    seen = runs(shop)
    inside = [r for r in seen[:before] if r[0] == 1 and r[2] == 1]  # while the deploy ran
    assert inside, f"the loop never ran inside the maintenance window: {seen}"
    assert not [r for r in inside if r[1]], f"cron:run started during maintenance: {seen}"
    assert any(r[1] for r in seen[before:]), "cron did not resume after the deploy"
    # after a failed setup:upgrade maintenance stays on, but cron is resumed all the same
    for host in rig3.hosts:
        assert not host.inside("/srv/shop/cron.pause").exists(), host.name
