"""A fake Magento shop installed on a rig: repo, database, shared env.php per host.

Tests read as scenarios on top of this: make a commit, deploy (in-process through the
library, or as ``fab`` in a subprocess exactly like a user), then look at each host's
own filesystem and at the fake Magento's command log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import shop
from rig import Rig, WebHost, make_rig, skip_or_fail

from fabric_magento_deploy import Host, deploy_to
from fabric_magento_deploy.report import Summary
from fabric_magento_deploy.settings import Settings, load

ROOT = Path(__file__).resolve().parent.parent
FAB = str(Path(sys.executable).with_name("fab"))
LOG = "/srv/log/magento.jsonl"
FAULTS = "/srv/log/faults.json"
DEADLINE = 120.0  # seconds a poll waits for a state before the test fails (a busy CI)
T = TypeVar("T")


class Shop:
    """The fake shop deployed to ``rig``; ``v1`` installed in the database."""

    def __init__(self, rig: Rig, *, label: str = "v1", blue_green: bool = False,
                 base_url: str | None = None, **web: object):
        """``base_url``: Magento's (default ``http://shop.test/``, a name that does not
        resolve, with the rig's HTTP port when it is not 80); ``web``: more of
        :func:`shop.install_db`'s options (``use_in_frontend``, ``redirect_to_base``...)."""
        self.rig = rig
        self.repo = rig.common / "shop"
        self.db = rig.common / "db" / "shop.json"
        self.db.parent.mkdir(parents=True, exist_ok=True)
        self.commits = [shop.make_repo(self.repo, label=label)]
        port = rig.http_port if rig.http_port not in (None, 80) else None
        default = f"http://shop.test{f':{port}' if port else ''}/"
        shop.install_db(self.db, self.repo, base_url=base_url or default, **web)
        for host in rig.hosts:
            env_php = host.inside("/srv/shop/shared/app/etc/env.php")
            env_php.parent.mkdir(parents=True, exist_ok=True)
            env_php.write_text(shop.env_php(self.db, command_log=LOG, faults=FAULTS,
                                            blue_green=blue_green))
            host.inside("/srv/log").mkdir(parents=True, exist_ok=True)
            host.sh(f"chown -R {rig.user}: /srv/shop /srv/log")
        subprocess.run(["chown", "-R", rig.user, str(self.db.parent)], check=True)

    # -- changes ---------------------------------------------------------------------------
    def commit(self, **changes: object) -> str:
        sha = shop.commit(self.repo, **changes)
        self.commits.append(sha)
        return sha

    def faults(self, host: WebHost, faults: dict) -> None:
        path = host.inside(FAULTS)
        shop.write_faults(path, faults)
        os.chmod(path, 0o644)

    # -- deploying -------------------------------------------------------------------------
    def env(self, **settings: str | None) -> dict[str, str]:
        base = {"repo": str(self.repo), "opcache": "none"}
        return self.rig.env(**{**base, **settings})

    def settings(self, **settings: str | None) -> Settings:
        return load(environ=self.env(**settings), cwd=self.rig.base)

    def hosts(self, names: list[str] | None = None) -> list[Host]:
        names = names or [h.name for h in self.rig.hosts]
        return [Host(n, self.rig.connection(n), echo=False) for n in names]

    def deploy(self, *, hosts: list[str] | None = None, ref: str | None = None,
               **settings: str | None) -> Summary:
        return deploy_to(self.hosts(hosts), self.settings(**settings), ref=ref, quiet=True)

    def fab(self, *args: str, timeout: float = 120, project: Path | None = None,
            **settings: str | None) -> subprocess.CompletedProcess[str]:
        """Run ``fab`` as a user would: with this repo's fabfile from a directory without
        ``.env``, or from ``project`` with the user's own fabfile there."""
        argv = [FAB, "-S", str(self.rig.ssh_config), *args] if project else self.fab_argv(*args)
        return subprocess.run(argv, env=self.env(**settings), cwd=project or self.rig.base,
                              text=True, capture_output=True, timeout=timeout)

    def fab_argv(self, *args: str) -> list[str]:
        return [FAB, "-r", str(ROOT), "-S", str(self.rig.ssh_config), *args]

    def fab_background(self, *args: str, **settings: str | None) -> subprocess.Popen[str]:
        """``fab`` in the background with SIGINT at its default (so Ctrl-C can be sent)."""
        return subprocess.Popen(
            self.fab_argv(*args), env=self.env(**settings), cwd=self.rig.base, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    # -- looking -----------------------------------------------------------------------------
    def live(self, host: WebHost) -> str | None:
        link = host.inside("/srv/shop/current")
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def releases(self, host: WebHost) -> list[str]:
        path = host.inside("/srv/shop/releases")
        return sorted(p.name for p in path.iterdir()) if path.is_dir() else []

    def release_path(self, host: WebHost, release: str, sub: str = "") -> Path:
        return host.inside(f"/srv/shop/releases/{release}/{sub}".rstrip("/"))

    def log(self, host: WebHost) -> list[dict]:
        path = host.inside(LOG)
        return shop.read_log(path) if path.exists() else []

    def commands(self, host: WebHost) -> list[str]:
        """The commands ``bin/magento`` ran on ``host``, in order (a bare ``--version``,
        which names no command, is left out)."""
        return [entry["cmd"] for entry in self.log(host) if entry["cmd"] is not None]

    def db_state(self) -> dict:
        return shop.read_db(self.db)

    def lock_exists(self, host: WebHost) -> bool:
        return host.inside("/srv/shop/deploy.lock").exists()


# The crontab line docs/adopting.md tells users to write: cron on `current`.
CRON_ON_CURRENT = ("* * * * * php /srv/shop/current/bin/magento cron:run 2>&1 | grep -v "
                   "\"Ran jobs by schedule\" >> /srv/shop/current/var/log/magento.cron.log\n")


@contextmanager
def deployed_with_crontabs(n_hosts: int, crontab: str = CRON_ON_CURRENT) -> Iterator[Shop]:
    """``n_hosts`` hosts with nginx and php-fpm, each with its own crontab holding
    ``crontab``, the shop deployed (OPcache flushed by FastCGI); stopped afterwards."""
    from conftest import require_real_hosts  # conftest imports this module's neighbours

    require_real_hosts(web=True)
    if subprocess.run(["sh", "-c", "command -v crontab"], capture_output=True).returncode:
        skip_or_fail("crontab missing: install the cron package")
    rig = make_rig(n_hosts)
    try:
        rig.start_web()
        shop = Shop(rig)
        for host in rig.hosts:
            host.own_crontabs()
            host.sh("crontab -", user="deployer", input=crontab)
        shop.deploy(opcache="fcgi")
        yield shop
    finally:
        rig.stop()


def aborted_upgrade(shop: Shop, host: WebHost) -> tuple[int, str]:
    """``fab deploy`` in the background, stopped twice while ``setup:upgrade`` runs on
    ``host`` (hold it there with a ``sleep`` fault): SIGTERM, wait until the deploy said
    it finishes the database work first (the upgrade goes on), SIGTERM again. Returns
    the exit code and the output."""
    proc = shop.fab_background("deploy")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        eventually(lambda: running(host, "setup:upgrade"), "setup:upgrade running")
    finally:
        proc.send_signal(signal.SIGTERM)
    # Two signals before the handler ran would count once: wait until it said so.
    eventually(lambda: any("send it again" in line for line in lines),
               "the first signal acknowledged")
    assert proc.poll() is None and running(host, "setup:upgrade"), "held: the upgrade goes on"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    reader.join(timeout=30)
    return proc.returncode, "".join(lines)


@contextmanager
def polling(check: Callable[[], None], interval: float = 0.0) -> Iterator[None]:
    """Call ``check`` over and over in a thread while the block runs."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            check()
            time.sleep(interval)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def always_resolves(path: Path) -> Iterator[list[int]]:
    """Check ``path`` (through ``current``) as fast as possible while the block runs;
    yields [checks, misses]. A deploy must never leave a moment without ``current``."""
    counts = [0, 0]

    def check() -> None:
        counts[0] += 1
        if not path.exists():
            counts[1] += 1

    with polling(check):
        yield counts


@contextmanager
def watch(paths: list[Path], interval: float = 0.005) -> Iterator[dict[Path, bool]]:
    """Record whether each path existed at any moment while the block ran."""
    seen = {p: False for p in paths}

    def check() -> None:
        for p in paths:
            seen[p] = seen[p] or p.exists()

    with polling(check, interval):
        yield seen


def eventually(check: Callable[[], T], what: str, timeout: float = DEADLINE) -> T:
    """Poll ``check`` until it returns something truthy (returned); fail at the deadline.

    For states the test waits for (a process gone, a daemon down): no fixed sleep, and a
    slow machine only makes the test slower, never wrong.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.02)


def stop_with(proc: subprocess.Popen[str], sig: int, timeout: float = 60.0) -> str:
    """Send ``sig`` to a background ``fab`` (see :meth:`Shop.fab_background`) and return
    its output once it exited. Still running ``timeout`` seconds later is a failure (the
    signal was not acted on); the process is killed first so it cannot outlive the test."""
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        out = proc.communicate()[0]
        raise AssertionError(f"fab still running {timeout:.0f} s after signal {sig}:\n"
                             f"{out[-3000:]}") from None


def running(host: WebHost, *args: str) -> list[int]:
    """PIDs of the processes inside ``host`` (its own mount namespace, not the whole
    machine where other rigs run too) having each of ``args`` as a whole argument:
    ``php bin/magento setup:upgrade`` matches ``"setup:upgrade"``, a shell whose script
    merely mentions it (``bash -c "... setup:upgrade ..."``) does not."""
    found = []
    for pid in host.pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if set(args) <= set(argv.split("\0")):
            found.append(pid)
    return found


class Gate:
    """Holds a deploy at one command on chosen hosts until the test opens the gate.

    ``program`` (``composer``, ``php``) is replaced by a script on every host (give
    :attr:`command` as ``DEPLOY_COMPOSER``/``DEPLOY_PHP``) that, when its arguments
    include ``arg``, waits for a file, then runs the real program; hosts not held get the
    file at once. The test acts at a known step (``composer install``: lock and
    preflight done, nothing switched; ``bin/magento setup:upgrade``: maintenance set)
    instead of guessing how long a step takes.
    """

    def __init__(self, rig: Rig, held: list[str], *, program: str = "composer",
                 arg: str = "install"):
        self.rig, self.held, self.arg = rig, held, arg
        self.command = f"/srv/log/{program}-gate"
        self._open = f"/srv/log/{program}-gate-open"
        for host in rig.hosts:
            script = host.inside(self.command)
            script.write_text(
                f'#!/bin/sh\ncase " $* " in *" {arg} "*)\n'
                f"  while [ ! -e {self._open} ]; do sleep 0.02; done;;\nesac\n"
                f'exec {program} "$@"\n')
            script.chmod(0o755)
            if host.name not in held:
                host.inside(self._open).touch()

    def waiting(self, host: WebHost) -> bool:
        """A deploy waits at the gate on ``host``."""
        return bool(running(host, self.command, self.arg))

    def open(self) -> None:
        for name in self.held:
            self.rig.host(name).inside(self._open).touch()

    @contextmanager
    def look_when_held(self, host: WebHost, look: Callable[[], T]) -> Iterator[list[T]]:
        """While the block runs: once a deploy waits at the gate on ``host``, call
        ``look`` (the deploy cannot move meanwhile), then open the gate. Yields a list
        that holds ``look``'s result afterwards (empty if the gate was never reached).
        The gate is open when the block ends, whatever happened."""
        seen: list[T] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def loop() -> None:
            try:
                while not stop.is_set():
                    if self.waiting(host):
                        seen.append(look())
                        return
                    time.sleep(0.01)
            except BaseException as exc:  # reported in the test's thread, not lost
                errors.append(exc)
            finally:
                self.open()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield seen
        finally:
            stop.set()
            thread.join()
            self.open()
        if errors:
            raise errors[0]
