# ruff: noqa: F811  (the fixtures of test_fakeshop are imported by name)
"""The fake shop's cron and queue commands behave like Magento 2.4's (PHP CLI, no rig).

``cron:run``, ``cron:install`` (a crontab block keyed by sha256 of the physical BP),
``queue:consumers:start`` (a long-running process that exits at its next message once the
poison pill changed) and ``queue:consumers:restart`` / ``setup:upgrade`` (which change the
pill). ``crontab`` is the real one; every command that touches it runs in a private mount
namespace with its own spool directory, so the machine's crontabs are never read or
written (needs root, like the rig; under ``CI=true`` a missing requirement fails).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import shop
from rig import skip_or_fail
from scenario import eventually
from test_fakeshop import COMPOSER_ENV, Site, built_tree, site  # noqa: F401 (fixtures)

SPOOL = "/var/spool/cron/crontabs"
CONSUMER = "shop.label.update"
DEADLINE = 30.0


def require_crontab() -> None:
    if os.geteuid() != 0 or shutil.which("crontab") is None or not os.path.isdir(SPOOL):
        skip_or_fail("cron tests need root, the crontab command and " + SPOOL)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    """A private crontab spool (``root:crontab``, 1730 like Debian's)."""
    require_crontab()
    path = tmp_path / "crontabs"
    path.mkdir()
    shutil.chown(path, "root", "crontab")
    path.chmod(0o1730)
    return path


def in_spool(spool: Path, argv: list[str]) -> list[str]:
    """``argv`` run with ``spool`` mounted over the crontab spool, in its own namespace."""
    script = 'mount --bind "$0" ' + SPOOL + ' && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(spool),
            *argv]


def magento(site: Site, spool: Path, *args: str, release: str | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    cwd = site.current if release is None else site.release(release)
    return subprocess.run(in_spool(spool, ["php", "bin/magento", *args]), cwd=cwd, text=True,
                          capture_output=True, timeout=60, env=COMPOSER_ENV, input=stdin)


def crontab(spool: Path, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(in_spool(spool, ["crontab", *args]), text=True, capture_output=True,
                          input=stdin, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def env_with(site: Site, extra: dict) -> None:
    """Rewrite the shared env.php with ``extra`` merged in (cron/enabled, queue settings)."""
    env = shop.parse_php_return((site.root / "shared" / "env.php").read_text())
    env.update(extra)
    (site.root / "shared" / "env.php").write_text(shop.php_export(env))


def db(site: Site) -> dict:
    """The fake database, read under its lock (consumers rewrite it in place meanwhile)."""
    with open(site.db) as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        return json.loads(handle.read())


def add_messages(site: Site, *bodies: str) -> None:
    with open(site.db, "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        data = json.loads(handle.read())
        queue = data.setdefault("queue_message", {}).setdefault(CONSUMER, [])
        start = len(data.get("queue_processed", [])) + len(queue)
        queue.extend({"id": start + i, "body": body} for i, body in enumerate(bodies))
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(data))


def processed(site: Site) -> list[dict]:
    return db(site).get("queue_processed", [])


@pytest.fixture
def consumers(site: Site) -> Iterator[list[subprocess.Popen[str]]]:
    """Background consumers a test starts; killed by PID at the end."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def start_consumer(site: Site, started: list, *args: str,
                   release: str | None = None) -> subprocess.Popen[str]:
    cwd = site.current if release is None else site.release(release)
    before = len(starts(site))
    proc = subprocess.Popen(["php", "bin/magento", "queue:consumers:start", CONSUMER, *args],
                            cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=COMPOSER_ENV)
    started.append(proc)
    eventually(lambda: len(starts(site)) > before or proc.poll() is not None,
               "the consumer started", timeout=DEADLINE)
    return proc


def starts(site: Site) -> list[dict]:
    """Consumer starts recorded in the database (history), each with its BP."""
    return [h for h in db(site)["history"] if h["event"] == f"queue:consumers:start {CONSUMER}"]


# --------------------------------------------------------------------------- cron:run


def test_cron_run_logs_and_prints_nothing_without_a_terminal(site: Site, spool: Path) -> None:
    proc = magento(site, spool, "cron:run")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    entry = shop.read_log(site.log)[-1]
    assert (entry["cmd"], entry["exit"], entry["bp"]) == ("cron:run", 0,
                                                         str(site.release("1").resolve()))


def test_cron_run_disabled_in_env_php(site: Site, spool: Path) -> None:
    env_with(site, {"cron": {"enabled": 0}})
    add_messages(site, "m1")
    proc = magento(site, spool, "cron:run")
    assert (proc.returncode, proc.stdout) == (0, "Cron is disabled. Jobs were not run.\n")
    assert db(site)["queue_message"][CONSUMER]  # no consumer was started


def test_cron_run_held_by_a_fault(site: Site) -> None:
    shop.write_faults(site.faults, {"cron:run": {"sleep": 30}})
    proc = subprocess.Popen(["php", "bin/magento", "cron:run"], cwd=site.current,
                            env=COMPOSER_ENV, stdout=subprocess.DEVNULL)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)  # still running: a test can hold it
    finally:
        proc.kill()
        proc.wait()


def test_cron_run_starts_consumers_of_its_own_release(site: Site, consumers: list) -> None:
    """ConsumersRunner: ``php <BP>/bin/magento queue:consumers:start NAME --single-thread
    --max-messages=10000`` in the background, only when the queue has messages."""
    run = subprocess.run(["php", "bin/magento", "cron:run"], cwd=site.current, env=COMPOSER_ENV,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0
    assert not starts(site)  # nothing in the queue: nothing started
    add_messages(site, "m1")
    subprocess.run(["php", "bin/magento", "cron:run"], cwd=site.current, env=COMPOSER_ENV,
                   capture_output=True, timeout=60, check=True)
    done = eventually(lambda: processed(site), "the message was processed", timeout=DEADLINE)
    bp = str(site.release("1").resolve())
    assert [(m["body"], m["bp"]) for m in done] == [("m1", bp)]
    assert [s["bp"] for s in starts(site)] == [bp]
    pid = done[0]["pid"]  # still running: it waits for more messages
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    assert [a.decode() for a in argv[1:]] == [
        f"{bp}/bin/magento", "queue:consumers:start", CONSUMER, "--single-thread",
        "--max-messages=10000"]
    os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- cron:install


def test_cron_install_writes_magentos_block_keyed_by_the_physical_bp(site: Site,
                                                                     spool: Path) -> None:
    crontab(spool, "-", stdin="MAILTO=ops@example.com\n0 3 * * * /usr/local/bin/backup\n")
    proc = magento(site, spool, "cron:install")
    assert (proc.returncode, proc.stdout) == (0, "Crontab has been generated and saved\n")
    bp = str(site.release("1").resolve())  # installed through `current`: still release 1
    digest = hashlib.sha256(bp.encode()).hexdigest()
    assert crontab(spool, "-l") == (
        "MAILTO=ops@example.com\n0 3 * * * /usr/local/bin/backup\n"
        f"#~ MAGENTO START {digest}\n"
        f"* * * * * {sys_php()} {bp}/bin/magento "
        f'cron:run 2>&1 | grep -v "Ran jobs by schedule" >> {bp}/var/log/magento.cron.log\n'
        f"#~ MAGENTO END {digest}\n\n"
    )


def sys_php() -> str:
    """PHP_BINARY of the CLI the tests run."""
    return subprocess.run(["php", "-r", "echo PHP_BINARY;"], capture_output=True, text=True,
                          check=True).stdout


def test_cron_install_twice_needs_force(site: Site, spool: Path) -> None:
    assert magento(site, spool, "cron:install").returncode == 0
    before = crontab(spool, "-l")
    again = magento(site, spool, "cron:install")
    assert (again.returncode, again.stdout) == (1, "Crontab has already been generated and saved\n")
    assert crontab(spool, "-l") == before
    forced = magento(site, spool, "cron:install", "--force")
    assert forced.returncode == 0
    assert crontab(spool, "-l").count("#~ MAGENTO START") == 1


def test_cron_install_from_another_release_adds_a_second_block(site: Site, spool: Path) -> None:
    """What bites a release-folder deploy: each release's cron:install is a new block."""
    site.new_release("2")  # copied with its env.php link
    assert magento(site, spool, "cron:install").returncode == 0
    site.switch("2")
    assert magento(site, spool, "cron:install").returncode == 0  # no --force needed
    text = crontab(spool, "-l")
    for release in ("1", "2"):
        bp = str(site.release(release).resolve())
        assert f"#~ MAGENTO START {hashlib.sha256(bp.encode()).hexdigest()}" in text
        assert f"{bp}/bin/magento cron:run" in text


# --------------------------------------------------------------------------- consumers


def test_consumer_exits_at_its_next_message_after_restart(site: Site, consumers: list) -> None:
    proc = start_consumer(site, consumers, "--max-messages=100")
    add_messages(site, "before")
    eventually(lambda: processed(site), "first message processed", timeout=DEADLINE)
    restart = site.magento("queue:consumers:restart")
    assert (restart.returncode, restart.stdout, restart.stderr) == (0, "", "")
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=2.5)  # idle: the pill is only looked at with the next message
    add_messages(site, "after")
    assert proc.wait(timeout=DEADLINE) == 0
    assert [m["body"] for m in processed(site)] == ["before"]
    assert [m["body"] for m in db(site)["queue_message"][CONSUMER]] == ["after"]  # put back
    assert shop.read_log(site.log)[-1]["cmd"] == "queue:consumers:start"
    assert shop.read_log(site.log)[-1]["exit"] == 0


def test_setup_upgrade_changes_the_pill(site: Site) -> None:
    before = db(site).get("queue_poison_pill")
    assert site.magento("setup:upgrade", "--keep-generated").returncode == 0
    after = db(site).get("queue_poison_pill")
    assert after and after != before


def test_consumer_without_max_messages_ignores_the_pill(site: Site, consumers: list) -> None:
    """Magento's subscribe() loop never reads the pill: only stopping it helps."""
    proc = start_consumer(site, consumers)
    assert site.magento("queue:consumers:restart").returncode == 0
    add_messages(site, "m")
    eventually(lambda: processed(site), "processed by the old consumer", timeout=DEADLINE)
    assert proc.poll() is None
    assert processed(site)[0]["pid"] == proc.pid


def test_single_thread_consumer_refuses_a_second_copy(site: Site, consumers: list) -> None:
    start_consumer(site, consumers, "--single-thread", "--max-messages=5")
    second = site.magento("queue:consumers:start", CONSUMER, "--single-thread")
    assert (second.returncode, second.stdout) == (1, "Consumer with the same name is running\n")


def test_unknown_consumer(site: Site) -> None:
    proc = site.magento("queue:consumers:start", "nope", "--max-messages=1")
    assert proc.returncode == 1
    assert 'Specified consumer "nope" is not declared.' in proc.stderr
