"""The fault matrix (issue 9, item 7): a bad day on three real hosts under HTTP load.

Three hosts, each with a real sshd, php-fpm (OPcache on, ``validate_timestamps=0``) and
nginx with Magento's rules, share one fake shop. While ``fab deploy`` runs into one fault,
:class:`load.HttpLoad` requests every host's storefront and the static files each page
links, like a browser. For every fault the test asserts, from the outside:

* what customers saw: 0 failed pages and 0 broken static assets, the maintenance page
  only where the deploy announced maintenance, and the release each host serves once
  ``fab`` has returned (pages polled to a deadline, never a fixed sleep);
* that every host ends on ONE release (``current`` points at the same folder everywhere);
* ``fab``'s exit code and a message naming the host and the step;
* that the shared data (``pub/media``, ``env.php``, logs: sha256 of every file under
  ``shared/``) is byte-identical before and after.

The faults are made real wherever possible: a failing command on one host (the fake
Magento's fault hooks), a host whose sshd and sessions are SIGKILLed, a full filesystem
(a tmpfs over ``releases/`` in one host's mount namespace, filled while the build waits
at a gate), permissions taken away, sshd started only after the first connection was
refused, and Ctrl-C / SIGTERM sent to ``fab`` while a :class:`scenario.Gate` holds it at
a known step. The switch has no program of its own to hold, so for it ``fab`` runs a
project fabfile that holds one host right after its switch command (all switch at once).

One rig serves the whole module (it takes seconds to start); :func:`heal` puts it back
into "one good release everywhere" after each test, without hiding anything: the test's
own assertions have run by then.

The checks of what issue 9 asks beyond "nothing broke" (a message that says what the
shop is left with, a lock kept while an outcome is unknown, ...) use :func:`require`.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import require_real_hosts
from load import HttpLoad, Sample
from rig import Rig, WebHost, make_rig
from scenario import FAB, Gate, Shop, eventually, running

pytestmark = [pytest.mark.real_hosts(web=True), pytest.mark.slow]

HOSTS = ("web1", "web2", "web3")
SHARED = "/srv/shop/shared"
ENV_PHP = f"{SHARED}/app/etc/env.php"
AFTER = 6  # pages per host polled after fab returned, to see what each host ends on


def require(condition: bool, message: str) -> None:
    """``assert`` with a message built before the check (the run's whole output)."""
    if not condition:
        raise AssertionError(message)


# --------------------------------------------------------------------------- the fleet


@dataclass
class Fleet:
    """The module's rig and shop, and which label each deployed commit shows."""

    rig: Rig
    shop: Shop
    labels: dict[str, str] = field(default_factory=dict)  # commit -> storefront label
    env_php: dict[str, bytes] = field(default_factory=dict)  # host -> its shared env.php
    changes: int = 0
    catalog_minor: int = 0

    @property
    def hosts(self) -> list[WebHost]:
        return self.rig.hosts

    def host(self, name: str) -> WebHost:
        return self.rig.host(name)

    def code_change(self) -> str:
        """Commit a code-only change; return the label the storefront will show."""
        self.changes += 1
        label = f"L{self.changes}"
        self.labels[self.shop.commit(label=label)] = label
        return label

    def schema_change(self) -> str:
        """Commit a change that needs ``setup:upgrade`` (a module version bump)."""
        self.changes += 1
        self.catalog_minor += 1
        label = f"L{self.changes}"
        sha = self.shop.commit(label=label, modules={"Shop_Catalog": f"1.{self.catalog_minor}.0"})
        self.labels[sha] = label
        return label

    def head(self) -> str:
        return self.shop.commits[-1]

    def live(self, host: WebHost) -> str | None:
        return self.shop.live(host)

    def live_label(self) -> str:
        """The label every host serves now (asserts they agree)."""
        commits = {self.revision(h, self.live(h)) for h in self.hosts}
        assert len(commits) == 1, commits
        return self.labels[commits.pop()]

    def revision(self, host: WebHost, release: str | None) -> str:
        if release is None:
            return ""
        return self.shop.release_path(host, release, "REVISION").read_text().strip()

    def releases(self, host: WebHost) -> list[str]:
        """Release folders as the host sees them (a tmpfs mounted inside it included)."""
        out = host.sh("ls -1 /srv/shop/releases").stdout
        return sorted(out.split())

    def settings(self, **extra: str) -> dict[str, str]:
        return {"opcache": "fcgi", **extra}

    def fab(self, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
        return self.shop.fab(*args, timeout=240, **self.settings(**settings))

    def background(self, *args: str, project: Path | None = None,
                   **settings: str) -> subprocess.Popen[str]:
        """``fab`` in the background, SIGINT at its default so Ctrl-C can be sent."""
        argv = ([FAB, "-S", str(self.rig.ssh_config), *args] if project
                else self.shop.fab_argv(*args))
        env = {**self.shop.env(**self.settings(**settings)), "PYTHONFAULTHANDLER": "1"}
        return subprocess.Popen(
            argv, env=env,
            cwd=project or self.rig.base, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_or_dump(proc: subprocess.Popen[str], output: Output, timeout: float = 180) -> int:
    """Wait for a background fab; if it hangs, fail with every thread's stack (SIGABRT +
    PYTHONFAULTHANDLER) instead of a bare timeout."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        proc.wait(timeout=30)
        stacks = output.join()
        raise AssertionError(f"fab hung for {timeout:.0f} s; its threads:\n{stacks}") from None


def snapshot(host: WebHost) -> dict[str, str]:
    """sha256 of every file under the host's ``shared/`` (links not followed)."""
    root = host.inside(SHARED)
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _seed_shared_data(fleet: Fleet) -> None:
    """Customer data a deploy must never touch: product images, a log, env.php."""
    for host in fleet.hosts:
        media = host.inside(f"{SHARED}/pub/media/catalog/product/s/h")
        media.mkdir(parents=True, exist_ok=True)
        (media / "shoe.jpg").write_bytes(os.urandom(8192))
        (media.parent.parent / "placeholder.png").write_bytes(os.urandom(512))
        log = host.inside(f"{SHARED}/var/log")
        log.mkdir(parents=True, exist_ok=True)
        (log / "system.log").write_text(f"{host.name}: order 100000042 paid\n")
        host.sh(f"chown -R deployer: {SHARED}")
        fleet.env_php[host.name] = host.inside(ENV_PHP).read_bytes()


@pytest.fixture(scope="module")
def fleet_module() -> Iterator[Fleet]:
    require_real_hosts(web=True)
    rig = make_rig(3)
    try:
        rig.start_web()
        shop = Shop(rig, label="L0")
        fleet = Fleet(rig, shop, labels={shop.commits[0]: "L0"})
        _seed_shared_data(fleet)
        shop.deploy(opcache="fcgi")
        yield fleet
    finally:
        rig.stop()


@pytest.fixture
def fleet(fleet_module: Fleet) -> Iterator[Fleet]:
    yield fleet_module
    heal(fleet_module)


def heal(fleet: Fleet) -> None:
    """Back to one good release everywhere, the shared data as seeded, nothing held.

    Undoes what a fault case may leave (sshd killed, a tmpfs, permissions, a gate, a
    fault hook, a lock, maintenance flags, env.php moved), then deploys the repository's
    head if any host is not serving it, and resets every pool's OPcache (as root, like
    ``systemctl reload``) so no test starts with another's cached code.
    """
    shop = fleet.shop
    for host in fleet.hosts:
        if host.daemon_pid("sshd") is None:
            host.start_sshd()
        host.sh(
            "mountpoint -q /srv/shop/releases && umount -l /srv/shop/releases; "
            "chmod 0755 /srv/shop; chmod -R u+w /srv/shop/releases 2>/dev/null; "
            "rm -f /srv/shop/deploy.lock /srv/shop/releases/*/var/.maintenance.flag "
            "/srv/log/*-gate /srv/log/*-gate-open /srv/log/switch-gate-* "
            "/srv/log/opcache-broken; "
            "for e in /srv/shop/releases/*/app/etc/env.php; do [ -L \"$e\" ] || "
            f"ln -sfn {ENV_PHP} \"$e\"; done; true")
        shop.faults(host, {})
        env_php = host.inside(ENV_PHP)
        if not env_php.exists() or env_php.read_bytes() != fleet.env_php[host.name]:
            env_php.parent.mkdir(parents=True, exist_ok=True)
            env_php.write_bytes(fleet.env_php[host.name])
            host.sh(f"chown deployer: {ENV_PHP}")
    lives = {fleet.live(h) for h in fleet.hosts}
    heads = {fleet.revision(h, fleet.live(h)) for h in fleet.hosts}
    if len(lives) != 1 or None in lives or heads != {fleet.head()}:
        shop.deploy(opcache="fcgi")
    for host in fleet.hosts:
        host.fpm_reload()


# --------------------------------------------------------------------------- one fault


@dataclass
class Run:
    """``fab`` run into a fault under load: its exit, its output, what visitors got."""

    rc: int
    out: str
    load: HttpLoad
    started: float
    done: float
    before: str  # the label every host served before
    shared_before: dict[str, dict[str, str]]
    releases_before: dict[str, list[str]]

    def after(self, host: str) -> list[Sample]:
        """Pages of ``host`` requested after fab returned."""
        return [s for s in self.load.samples if s.host == host and s.t_start > self.done]


def under_load(fleet: Fleet, action: Callable[[], tuple[int, str]]) -> Run:
    """Run ``action`` (returning exit code and output) while every host is loaded."""
    before = fleet.live_label()
    shared = {h.name: snapshot(h) for h in fleet.hosts}
    releases = {h.name: fleet.releases(h) for h in fleet.hosts}
    with HttpLoad.on_rig(fleet.rig, max_seconds=180) as load:
        load.wait_ok()
        started = time.time()
        seen = {s.label for s in load.samples if s.kind == "ok"}
        assert seen == {before}, f"the rig did not serve {before} before the fault: {seen}"
        rc, out = action()
        done = time.time()
        load.wait_after(done, count=AFTER)
    return Run(rc, out, load, started, done, before, shared, releases)


def fab_into(fleet: Fleet, *args: str, **settings: str) -> Callable[[], tuple[int, str]]:
    def action() -> tuple[int, str]:
        result = fleet.fab(*args, **settings)
        return result.returncode, result.stdout + result.stderr
    return action


def assert_customers(fleet: Fleet, run: Run, *, end: dict[str, set[str]],
                     maintenance: set[str] = frozenset()) -> None:
    """0 failed pages, 0 broken assets anywhere; maintenance only on the hosts where it
    was announced; after fab returned each host answered only ``end[host]`` (labels,
    ``"maintenance"`` for the maintenance page)."""
    load = run.load
    assert load.failed() == [], load.summary()
    assert load.broken_assets() == [], load.summary()
    for host in fleet.hosts:
        if host.name not in maintenance:
            assert load.maintenance(host.name) == [], (host.name, load.summary())
        after = {s.label if s.kind == "ok" else s.kind for s in run.after(host.name)}
        assert after and after <= end[host.name], (host.name, after, load.summary())


def assert_one_release(fleet: Fleet, release: str | None = None) -> str:
    """Every host's ``current`` points at the same release (``release`` if given)."""
    lives = {h.name: fleet.live(h) for h in fleet.hosts}
    assert len(set(lives.values())) == 1, f"hosts on different releases: {lives}"
    live = lives["web1"]
    assert live is not None
    if release is not None:
        assert live == release, lives
    return live


def assert_shared_unchanged(fleet: Fleet, run: Run) -> None:
    for host in fleet.hosts:
        assert snapshot(host) == run.shared_before[host.name], f"{host.name}: shared/ changed"


def assert_no_new_release(fleet: Fleet, run: Run, hosts: list[WebHost] | None = None) -> None:
    """The new release folder is gone again: the same folders as before the deploy."""
    for host in hosts or fleet.hosts:
        assert fleet.releases(host) == run.releases_before[host.name], (
            f"{host.name} kept the new release")


def assert_no_lock(fleet: Fleet, hosts: list[WebHost] | None = None) -> None:
    for host in hosts or fleet.hosts:
        assert not fleet.shop.lock_exists(host), f"{host.name}: deploy.lock left behind"


class Output:
    """A background process's output, read as it comes (a full pipe would block it)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def join(self) -> str:
        self._thread.join(30)
        return self.text()


def flags(fleet: Fleet, host: WebHost) -> dict[str, bool]:
    """Per release folder of ``host``: is its maintenance flag there?"""
    return {rel: fleet.shop.release_path(host, rel, "var/.maintenance.flag").exists()
            for rel in fleet.releases(host)}


def failed_line(out: str, what: str) -> str:
    """The ``<what> failed on a, b:`` line of a deploy error (which hosts it names)."""
    lines = [line for line in out.splitlines() if f"{what} failed on " in line]
    assert lines, f"no '{what} failed on' line in:\n{out}"
    return lines[0]


# --------------------------------------------------------------------------- before the switch


def test_build_fails_on_one_host(fleet: Fleet) -> None:
    live = fleet.live(fleet.host("web1"))
    fleet.code_change()
    fleet.shop.faults(fleet.host("web2"), {"setup:di:compile": {
        "exit": 1, "message": "Area code is not set (web2 only)"}})
    run = under_load(fleet, fab_into(fleet, "deploy", "--quiet"))
    assert run.rc == 1, run.out
    assert "web2" in failed_line(run.out, "build"), run.out
    assert "web1" not in failed_line(run.out, "build")
    assert "[web2] di:compile failed (exit 1)" in run.out and "(web2 only)" in run.out
    assert_customers(fleet, run, end={h: {run.before} for h in HOSTS})
    assert_one_release(fleet, live)
    assert_no_new_release(fleet, run)
    assert_no_lock(fleet)
    assert_shared_unchanged(fleet, run)
    require("nothing was switched" in run.out,
            f"the message does not say what the shop is left with:\n{run.out}")


def test_a_host_dies_mid_build(fleet: Fleet) -> None:
    web3 = fleet.host("web3")
    live = fleet.live(web3)
    fleet.code_change()
    gate = Gate(fleet.rig, held=["web3"])  # web3's composer install waits: lock taken
    killed: list[int] = []

    def deploy() -> tuple[int, str]:
        with gate.look_when_held(web3, lambda: killed.extend(web3.kill_ssh())):
            result = fleet.fab("deploy", "--quiet", composer=gate.command)
        return result.returncode, result.stdout + result.stderr

    run = under_load(fleet, deploy)
    assert killed, "web3's build never reached the gate"
    assert web3.daemon_pid("sshd") is None, "web3 stayed dead during the deploy"
    assert run.rc == 1, run.out
    line = failed_line(run.out, "build")
    assert "web3" in line and "web1" not in line and "web2" not in line, line
    assert "[web3] composer install failed" in run.out, run.out
    # web3's nginx and php-fpm still answer: visitors there keep the old release too.
    assert_customers(fleet, run, end={h: {run.before} for h in HOSTS})
    assert_one_release(fleet, live)
    assert_no_new_release(fleet, run, fleet.hosts[:2])
    assert_no_lock(fleet, fleet.hosts[:2])
    assert_shared_unchanged(fleet, run)
    require("exit -1" not in run.out and "no exit code" in run.out,
            f"a lost connection is reported as an exit code:\n{run.out}")
    require("fab unlock --hosts=web3" in run.out,
            f"nothing tells the operator that web3's lock is left:\n{run.out}")


def test_setup_upgrade_fails(fleet: Fleet) -> None:
    web1 = fleet.host("web1")
    live = fleet.live(web1)
    fleet.schema_change()
    fleet.shop.faults(web1, {"setup:upgrade": {  # after part of the work: half-upgraded
        "exit": 1, "message": "SQLSTATE[HY000]: General error: 2006 MySQL server has gone away",
        "when": "after"}})
    run = under_load(fleet, fab_into(fleet, "deploy", "--quiet"))
    assert run.rc == 1, run.out
    assert "[web1] setup:upgrade failed (exit 1)" in run.out and "gone away" in run.out
    assert "HALF-UPGRADED" in run.out and "maintenance stays ON on every host" in run.out
    # Announced: every host shows the maintenance page from then on, none an error.
    assert_customers(fleet, run, end={h: {"maintenance"} for h in HOSTS}, maintenance=set(HOSTS))
    assert_one_release(fleet, live)
    for host in fleet.hosts:
        assert flags(fleet, host)[live], f"{host.name}: the live release is not in maintenance"
        assert not fleet.shop.lock_exists(host)
    assert_shared_unchanged(fleet, run)


def test_the_primary_dies_during_setup_upgrade(fleet: Fleet) -> None:
    web1 = fleet.host("web1")
    live = fleet.live(web1)
    fleet.schema_change()
    gate = Gate(fleet.rig, held=["web1"], program="php", arg="setup:upgrade")
    killed: list[int] = []

    def deploy() -> tuple[int, str]:
        with gate.look_when_held(web1, lambda: killed.extend(web1.kill_ssh())):
            result = fleet.fab("deploy", "--quiet", php=gate.command)
        return result.returncode, result.stdout + result.stderr

    run = under_load(fleet, deploy)
    assert killed, "setup:upgrade never reached the gate on web1"
    assert run.rc == 1, run.out
    assert "[web1] setup:upgrade failed" in run.out, run.out
    # Maintenance was on everywhere before setup:upgrade started, and stays on.
    assert_customers(fleet, run, end={h: {"maintenance"} for h in HOSTS}, maintenance=set(HOSTS))
    assert_one_release(fleet, live)
    for host in fleet.hosts:
        assert flags(fleet, host)[live], f"{host.name}: the live release is not in maintenance"
    assert_shared_unchanged(fleet, run)
    require("outcome of setup:upgrade on web1 is unknown" in run.out,
            f"a lost connection during setup:upgrade is not reported as unknown:\n{run.out}")
    kept = {h.name: h.inside("/srv/shop/deploy.lock").exists() for h in fleet.hosts[1:]}
    require(all(kept.values()), f"the deploy lock was released while setup:upgrade's outcome "
            f"is unknown: {kept}")


def test_switch_fails_on_one_host_after_the_others_switched(fleet: Fleet) -> None:
    web3 = fleet.host("web3")
    live = fleet.live(web3)
    fleet.code_change()
    gate = Gate(fleet.rig, held=["web3"])  # as test_fleet: web3 loses write access to /srv/shop

    def deploy() -> tuple[int, str]:
        with gate.look_when_held(web3, lambda: web3.sh("chmod 0555 /srv/shop")):
            result = fleet.fab("deploy", "--quiet", composer=gate.command)
        return result.returncode, result.stdout + result.stderr

    try:
        run = under_load(fleet, deploy)
    finally:
        web3.sh("chmod 0755 /srv/shop")
    assert run.rc == 1, run.out
    assert "switch failed on web3" in run.out and "[web3] switch failed" in run.out, run.out
    assert "every host is back on its previous release" in run.out
    # `current` is a new link renamed into place: web1 and web2 were switched (and back).
    moved = {h.name: h.inside("/srv/shop/current").lstat().st_mtime > run.started
             for h in fleet.hosts}
    assert moved == {"web1": True, "web2": True, "web3": False}, moved
    # Until the OPcache flush (which never came) PHP kept the old release's code cached:
    # visitors never saw the new release, then its folder was removed.
    assert_customers(fleet, run, end={h: {run.before} for h in HOSTS})
    assert_one_release(fleet, live)
    assert_no_new_release(fleet, run)
    assert_no_lock(fleet, fleet.hosts[:2])
    assert_shared_unchanged(fleet, run)


def test_disk_full_during_build(fleet: Fleet) -> None:
    web2 = fleet.host("web2")
    live = fleet.live(web2)
    fleet.code_change()
    used_kib = int(web2.sh("du -sk /srv/shop/releases").stdout.split()[0])
    web2.mount_tmpfs("/srv/shop/releases", f"{used_kib // 1024 + 16}m")
    gate = Gate(fleet.rig, held=["web2"])

    def fill() -> None:  # checkout done, composer install about to run: the disk fills up
        web2.sh("dd if=/dev/zero of=/srv/shop/releases/.fill bs=64k 2>/dev/null; true")
        assert web2.sh("df --output=avail /srv/shop/releases | tail -1").stdout.strip() == "0"

    def deploy() -> tuple[int, str]:
        with gate.look_when_held(web2, fill) as filled:
            result = fleet.fab("deploy", "--quiet", composer=gate.command)
        assert filled, "web2's build never reached the gate"
        return result.returncode, result.stdout + result.stderr

    try:
        run = under_load(fleet, deploy)
        on_web2 = fleet.releases(web2)
    finally:
        web2.sh("rm -f /srv/shop/releases/.fill")
        web2.unmount("/srv/shop/releases")
    assert run.rc == 1, run.out
    line = failed_line(run.out, "build")
    assert "web2" in line and "web1" not in line and "web3" not in line, line
    assert "[web2] composer install failed" in run.out, run.out
    assert "Nospaceleftondevice" in "".join(run.out.replace("|", "").split()), run.out
    assert_customers(fleet, run, end={h: {run.before} for h in HOSTS})
    assert_one_release(fleet, live)
    assert on_web2 == run.releases_before["web2"], f"web2 kept the failed release: {on_web2}"
    assert_no_new_release(fleet, run, [fleet.host("web1"), fleet.host("web3")])
    assert_no_lock(fleet)
    assert_shared_unchanged(fleet, run)


def test_missing_shared_env_php(fleet: Fleet) -> None:
    web2 = fleet.host("web2")
    live = fleet.live(web2)
    # The live release keeps the configuration it was started with (a copy), so visitors
    # are unaffected until a deploy makes use of the missing file.
    web2.sh(f"cd /srv/shop/releases/{live}/app/etc && cp --remove-destination {ENV_PHP} "
            f"env.php && rm {ENV_PHP}", user="deployer")
    fleet.code_change()
    run = under_load(fleet, fab_into(fleet, "deploy", "--quiet"))
    lives = {h.name: fleet.live(h) for h in fleet.hosts}
    require(run.load.failed() == [],
            f"visitors got errors from web2:\n{run.load.summary()}\nfab said:\n{run.out}")
    require(set(lives.values()) == {live}, f"hosts switched to a release without env.php: "
            f"{lives}")
    require(run.rc == 1 and "web2" in run.out and "env.php" in run.out,
            f"exit {run.rc}, the message does not name web2's missing env.php:\n{run.out}")
    require(not web2.inside(ENV_PHP).exists(),
            "an empty shared/app/etc/env.php was created on web2")
    assert_customers(fleet, run, end={h: {run.before} for h in HOSTS})
    assert_shared_unchanged(fleet, run)


def test_unwritable_deploy_path(fleet: Fleet) -> None:
    web2 = fleet.host("web2")
    live = fleet.live(web2)
    fleet.code_change()

    def state() -> dict[str, tuple]:
        return {h.name: (fleet.releases(h), sorted(os.listdir(h.inside("/srv/shop/history"))),
                         fleet.shop.lock_exists(h)) for h in fleet.hosts}

    before = state()
    web2.sh("chmod 0555 /srv/shop")
    try:
        run = under_load(fleet, fab_into(fleet, "deploy", "--quiet"))
    finally:
        web2.sh("chmod 0755 /srv/shop")
    assert run.rc == 1, run.out
    assert "[web2]" in run.out and "/srv/shop/deploy.lock" in run.out, run.out
    assert "Traceback" not in run.out
    assert state() == before, "a host was changed"
    assert_customers(fleet, run, end={h: {run.before} for h in HOSTS})
    assert_one_release(fleet, live)
    assert_shared_unchanged(fleet, run)
    require("held by" not in run.out and "Permission denied" in run.out,
            f"an unwritable DEPLOY_PATH is reported as a lock someone holds:\n{run.out}")


def test_connection_refused_once(fleet: Fleet) -> None:
    """web3's sshd is down when the deploy connects (a restart, a reboot ending): the
    connection is refused, sshd comes back, and the deploy goes on after a bounded retry.
    The refusal is seen on the wire (the kernel's RST to the SYN), not assumed."""
    web3 = fleet.host("web3")
    fleet.code_change()
    web3.kill_ssh()
    watcher = RefusalWatcher(web3.address, web3.ssh_port)
    refused = threading.Event()

    def deploy() -> tuple[int, str]:
        proc = fleet.background("deploy", "--quiet")
        output = Output(proc)
        try:
            if watcher.wait(timeout=60):
                refused.set()
        finally:
            watcher.close()
            web3.start_sshd()
        return wait_or_dump(proc, output), output.join()

    run = under_load(fleet, deploy)
    assert refused.is_set(), "no connection to web3 was refused: the fault did not happen"
    assert run.rc == 0, run.out
    new = assert_one_release(fleet)
    label = fleet.labels[fleet.revision(fleet.host("web1"), new)]
    assert_customers(fleet, run, end={h: {label} for h in HOSTS})
    assert_shared_unchanged(fleet, run)


class RefusalWatcher:
    """Sees on the loopback interface when a connection to ``address:port`` is refused
    (the kernel answers the SYN with RST because nothing listens). Root only."""

    def __init__(self, address: str, port: int) -> None:
        self.address, self.port = socket.inet_aton(address), port
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        self.sock.bind(("lo", 0))

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                frame = self.sock.recv(65535)
            except TimeoutError:
                return False
            if frame[12:14] != b"\x08\x00" or frame[14 + 9] != socket.IPPROTO_TCP:
                continue
            ip = frame[14:]
            tcp = ip[(ip[0] & 0x0F) * 4:]
            source, sport, rst = ip[12:16], int.from_bytes(tcp[0:2], "big"), tcp[13] & 0x04
            if source == self.address and sport == self.port and rst:
                return True
        return False

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------- signals


PROJECT_FABFILE = textwrap.dedent('''\
    """A project fabfile: every task, and a gate right after one host's switch (tests)."""
    import os

    from fabric_magento_deploy import ns  # noqa: F401
    from fabric_magento_deploy.hosts import Host

    _run_together = Host.run_together


    def run_together(self, command, barrier, **kwargs):
        result = _run_together(self, command, barrier, **kwargs)
        if self.name == os.environ.get("SWITCH_GATE_HOST"):
            self.run("touch /srv/log/switch-gate-waiting; "
                     "while [ ! -e /srv/log/switch-gate-open ]; do sleep 0.02; done",
                     step="switch gate", echo=False)
        return result


    Host.run_together = run_together
    ''')


@dataclass
class Hold:
    """Where a background ``fab deploy`` is held, how to see it waiting, how to let go."""

    settings: dict[str, str]
    waiting: Callable[[], bool]
    release: Callable[[], None]
    project: Path | None = None


def hold_at(fleet: Fleet, phase: str) -> Hold:
    web1, web3 = fleet.host("web1"), fleet.host("web3")
    if phase == "build":
        gate = Gate(fleet.rig, held=["web2"])
        return Hold({"composer": gate.command}, lambda: gate.waiting(fleet.host("web2")),
                    gate.open)
    if phase == "upgrade":
        gate = Gate(fleet.rig, held=["web1"], program="php", arg="setup:upgrade")
        return Hold({"php": gate.command}, lambda: gate.waiting(web1), gate.open)
    project = fleet.rig.base / "project-with-switch-gate"
    project.mkdir(exist_ok=True)
    (project / "fabfile.py").write_text(PROJECT_FABFILE)

    def waiting() -> bool:  # every host switched at once; web3 is held before it returns
        return (web3.inside("/srv/log/switch-gate-waiting").exists()
                and len({fleet.live(h) for h in fleet.hosts}) == 1)

    return Hold({"SWITCH_GATE_HOST": "web3"}, waiting,
                lambda: web3.inside("/srv/log/switch-gate-open").touch(), project)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("phase", [
    "build",
    "upgrade",
    "switch",
])
def test_interrupted(fleet: Fleet, phase: str, sig: int) -> None:
    """One Ctrl-C or SIGTERM while fab is held at a known step. Before the database work
    it stops now and undoes everything (130); during setup:upgrade or the switch it is
    held until the release is live everywhere, and the exit must say so."""
    live = fleet.live(fleet.host("web1"))
    label = fleet.schema_change() if phase == "upgrade" else fleet.code_change()
    hold = hold_at(fleet, phase)

    def deploy() -> tuple[int, str]:
        proc = fleet.background("deploy", "--quiet", project=hold.project, **hold.settings)
        output = Output(proc)
        try:
            eventually(lambda: hold.waiting() or proc.poll() is not None, f"fab held at {phase}")
            assert proc.poll() is None, output.join()
            proc.send_signal(sig)
            if phase != "build":  # held: the deploy goes on once the step may go on
                eventually(lambda: "then stopping" in output.text() or proc.poll() is not None,
                           "fab took note of the signal")
                assert proc.poll() is None, output.join()
                hold.release()
            rc = wait_or_dump(proc, output)
        finally:
            if proc.poll() is None:
                proc.kill()
            hold.release()
        return rc, output.join()

    run = under_load(fleet, deploy)
    for host in fleet.hosts:
        assert not fleet.shop.lock_exists(host), f"{host.name}: lock left"
    if phase == "build":
        assert run.rc == 130, run.out
        assert "interrupted: nothing was switched that was not switched back" in run.out
        assert_customers(fleet, run, end={h: {run.before} for h in HOSTS})
        assert_one_release(fleet, live)
        assert_no_new_release(fleet, run)
        eventually(lambda: not running(fleet.host("web2"), "/srv/log/composer-gate"),
                   "the held composer stopped on web2")
        assert_shared_unchanged(fleet, run)
        return
    assert f"signal {int(sig)} received" in run.out and "then stopping" in run.out, run.out
    new = assert_one_release(fleet)
    assert new != live and fleet.labels[fleet.revision(fleet.host("web1"), new)] == label
    assert_customers(fleet, run, end={h: {label} for h in HOSTS},
                     maintenance=set(HOSTS) if phase == "upgrade" else set())
    for host in fleet.hosts:
        assert not any(flags(fleet, host).values()), f"{host.name}: maintenance left on"
    assert_shared_unchanged(fleet, run)
    require(run.rc != 130 and "nothing was switched" not in run.out
            and f"release {new}" in run.out and "is live" in run.out,
            f"exit {run.rc} and the message hide that release {new} is live:\n{run.out}")


# --------------------------------------------------------------------------- after the switch


def php_failing_opcache_reset(fleet: Fleet) -> str:
    """``DEPLOY_PHP`` whose OPcache reset (not its status probe) fails where
    ``/srv/log/opcache-broken`` exists: the pool went away between preflight and flush."""
    for host in fleet.hosts:
        wrapper = host.inside("/srv/log/php-opcache-fault")
        wrapper.write_text(
            "#!/bin/sh\ncase \"$*\" in *'\"ops\": [\"reset\"'*)\n"
            "  if [ -e /srv/log/opcache-broken ]; then\n"
            "    echo 'connect() to /srv/run/php-fpm.sock failed (test fault)' >&2; exit 1\n"
            "  fi;;\nesac\nexec php \"$@\"\n")
        wrapper.chmod(0o755)
    return "/srv/log/php-opcache-fault"


def test_cache_flush_fails_after_the_switch(fleet: Fleet) -> None:
    label = fleet.code_change()
    fleet.shop.faults(fleet.host("web1"), {"cache:flush": {
        "exit": 1, "message": "Redis: connection refused"}})
    run = under_load(fleet, fab_into(fleet, "deploy", "--quiet"))
    assert run.rc == 1, run.out
    assert "THE RELEASE IS LIVE, BUT" in run.out and "Redis: connection refused" in run.out
    assert "[web1] cache:flush failed (exit 1)" in run.out, run.out
    new = assert_one_release(fleet)
    for name in HOSTS:
        assert f"{name}: current -> releases/{new}, maintenance off" in run.out, run.out
    assert_customers(fleet, run, end={h: {label} for h in HOSTS})
    assert run.load.stale_after(run.done, run.before) == []
    assert_shared_unchanged(fleet, run)


def test_opcache_flush_fails_on_one_host_after_the_switch(fleet: Fleet) -> None:
    web2 = fleet.host("web2")
    live = fleet.live(web2)
    label = fleet.schema_change()
    php = php_failing_opcache_reset(fleet)
    web2.inside("/srv/log/opcache-broken").touch()
    run = under_load(fleet, fab_into(fleet, "deploy", "--quiet", php=php))
    assert run.rc == 1, run.out
    assert "THE RELEASE IS LIVE, BUT" in run.out and "OPcache was not flushed on web2:" in run.out
    assert "(test fault)" in run.out, run.out
    new = assert_one_release(fleet)
    assert new != live
    assert f"web2: current -> releases/{new}, maintenance off" in run.out, run.out
    # web2's workers still run the old code: the old release keeps its maintenance flag,
    # so they answer with the maintenance page (announced), never the old shop.
    assert flags(fleet, web2)[live] and not flags(fleet, web2)[new]
    assert_customers(fleet, run, end={"web1": {label}, "web2": {"maintenance", label},
                                      "web3": {label}}, maintenance=set(HOSTS))
    assert run.load.stale_after(run.done, run.before) == [], run.load.summary()
    assert_shared_unchanged(fleet, run)


def test_maintenance_off_fails_on_one_host_after_the_switch(fleet: Fleet) -> None:
    web1, web2 = fleet.host("web1"), fleet.host("web2")
    live = fleet.live(web2)
    label = fleet.schema_change()
    gate = Gate(fleet.rig, held=["web1"], program="php", arg="setup:upgrade")

    def lock_var_dirs() -> None:  # maintenance is on now; web2 can no longer remove the flags
        web2.sh("chmod 0555 /srv/shop/releases/*/var")

    def deploy() -> tuple[int, str]:
        with gate.look_when_held(web1, lock_var_dirs) as held:
            result = fleet.fab("deploy", "--quiet", php=gate.command)
        assert held, "setup:upgrade never reached the gate"
        return result.returncode, result.stdout + result.stderr

    try:
        run = under_load(fleet, deploy)
    finally:
        web2.sh("chmod 0755 /srv/shop/releases/*/var")
    assert run.rc == 1, run.out
    assert "maintenance could not be lifted on web2" in run.out, run.out
    assert "fab maintenance-off --hosts=web2" in run.out
    new = assert_one_release(fleet)
    assert new != live
    assert f"web2: current -> releases/{new}, maintenance ON (set by deploy {new})" in run.out
    for name in ("web1", "web3"):
        assert f"{name}: current -> releases/{new}, maintenance off" in run.out
    assert_customers(fleet, run, end={"web1": {label}, "web2": {"maintenance"},
                                      "web3": {label}}, maintenance=set(HOSTS))
    assert_shared_unchanged(fleet, run)
