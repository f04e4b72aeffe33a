"""OPcache after the ``current`` switch, on real php-fpm 8.2 + nginx (see ``tests/rig.py``).

The rig's FPM runs production-like (``opcache.validate_timestamps=0``) behind nginx with
``SCRIPT_FILENAME $document_root$fastcgi_script_name``, as Magento's sample config does.
Each release has an ``index.php`` that loads 40 library files and prints its release name
and the worker's pid, so a stale answer is visible and the report's counts are real.

Scenarios: the gotcha itself (switch without flush: every answer still from release A,
even after an ``opcache_reset()`` on the CLI); every strategy making the next answers
come from B; every failure naming its cause and leaving no one-time script behind.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from rig import DEPLOY_USER, PHP_FPM, Rig, WebHost, documented_opcache_location

from fabric_magento_deploy import opcache
from fabric_magento_deploy.hosts import Host
from fabric_magento_deploy.opcache import FlushReport, OpcacheError, choose, flush
from fabric_magento_deploy.settings import Settings, load
from fabric_magento_deploy.switch import point_current

pytestmark = pytest.mark.real_hosts(web=True)

N_LIB = 40  # library files per release: what "scripts before" must at least count


# --------------------------------------------------------------------------- helpers


def shop(rig: Rig, tmp_path: Path, **env: str | None) -> tuple[WebHost, Host, Settings]:
    """Host web1 with releases A and B, ``current`` -> A, and settings from the rig's env.

    ``cwd=tmp_path``: the settings must not pick up a developer's ``./.env``.
    """
    wh = rig.host("web1")
    root = wh.inside(rig.deploy_path)
    for release in ("A", "B"):
        lib = root / "releases" / release / "lib"
        lib.mkdir(parents=True)
        for i in range(N_LIB):
            (lib / f"f{i}.php").write_text(f"<?php function lib_{i}() {{ return {i}; }}\n")
        (lib.parent / "pub").mkdir()
        (lib.parent / "pub" / "index.php").write_text(
            "<?php foreach (glob(__DIR__ . '/../lib/*.php') as $f) { require_once $f; }\n"
            f"usleep(3000); echo 'release {release} pid ', getmypid(), \"\\n\";\n"
        )
    wh.sh(f"chown -R {DEPLOY_USER}: {shlex.quote(rig.deploy_path)}")
    host = Host("web1", rig.connection("web1"), echo=False)
    settings = load(rig.env(**env), cwd=tmp_path, require_repo=False)
    point_current(host, settings, "A")
    return wh, host, settings


def answers(wh: WebHost, n: int = 32) -> list[str]:
    """``n`` concurrent requests (8 at a time, so every FPM worker serves some)."""

    def get(_: int) -> str:
        with urllib.request.urlopen(wh.url("/index.php"), timeout=10) as resp:
            return resp.read().decode().strip()

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(get, range(n)))


def releases(bodies: list[str]) -> set[str]:
    return {body.split()[1] for body in bodies}


def leftovers(wh: WebHost, rig: Rig) -> list[str]:
    """Every one-time script still anywhere under DEPLOY_PATH (must be none)."""
    return wh.sh(f"find {shlex.quote(rig.deploy_path)} -name '*opcache*'").stdout.split()


def go_live_stale(wh: WebHost, host: Host, settings: Settings) -> None:
    """A served and cached, then the switch to B: the state every flush must repair."""
    assert releases(answers(wh, 8)) == {"A"}
    point_current(host, settings, "B")
    assert releases(answers(wh, 8)) == {"A"}, "the gotcha did not show: nothing to prove"


def url_of(wh: WebHost, path: str = "/") -> str:
    """The shop URL as configured: a name (not the host's address) and nginx's port."""
    return f"http://shop.example.test:{wh.http_port}{path}"


# --------------------------------------------------------------------------- the gotcha


def test_switch_without_flush_keeps_serving_the_old_release(web_rig1, tmp_path):
    wh, host, settings = shop(web_rig1, tmp_path)
    assert releases(answers(wh, 16)) == {"A"}
    point_current(host, settings, "B")
    assert wh.realpath(f"{web_rig1.deploy_path}/current") == f"{web_rig1.deploy_path}/releases/B"
    # The CLI has its own (disabled) OPcache: resetting it changes nothing for FPM.
    assert host.output(f"{settings.php} -r 'var_dump(opcache_reset());'") == "bool(false)"

    stale, total, workers, start = 0, 0, set(), time.monotonic()
    while time.monotonic() - start < 1.5:
        bodies = answers(wh, 16)
        total += len(bodies)
        stale += sum(body.startswith("release A") for body in bodies)
        workers |= {body.split()[-1] for body in bodies}
    print(f"\nno flush: {stale}/{total} stale answers in 1.5 s from {len(workers)} workers")
    assert stale == total
    assert len(workers) > 1


# --------------------------------------------------------------------------- strategies


# An operator's own DEPLOY_OPCACHE_COMMAND: a reset through nginx with the PHP CLI, then one
# more request so OPcache's restart (it waits for an idle instant) is done when it returns.
# Magento's nginx rules deny any PHP that is not an entry point, so the operator has added
# a location for the hook too (HOOK_LOCATION).
HOOK_LOCATION = """\
location = /hook.php {
    fastcgi_pass fastcgi_backend;
    fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
    include fastcgi_params;
}
"""
HOOK = (
    "for d in {path}/releases/*/pub; do echo '<?php echo isset($_GET[\"reset\"]) ? "
    "var_export(opcache_reset(), true) : \"ok\";' > $d/hook.php; done; "
    "php -r 'echo file_get_contents($argv[1] . \"?reset=1\"), file_get_contents($argv[1]);' "
    "{url}; rc=$?; rm -f {path}/releases/*/pub/hook.php; exit $rc"
)


@pytest.mark.parametrize("strategy", ["fcgi-unix", "fcgi-tcp", "url", "command"])
def test_flush_makes_the_next_answers_come_from_the_new_release(web_rig1, tmp_path, strategy):
    wh = web_rig1.host("web1")
    if strategy == "fcgi-tcp":
        web_rig1.start_web(tcp=True)
    if strategy == "url":  # exactly what docs/opcache.md tells users to add
        web_rig1.start_web(extra_locations=documented_opcache_location())
    if strategy == "command":
        web_rig1.start_web(extra_locations=HOOK_LOCATION)
    env = {
        "fcgi-unix": {"opcache": "fcgi"},
        "fcgi-tcp": {"opcache": "fcgi", "fpm_socket": wh.fpm_tcp},
        "url": {"opcache": "url", "opcache_url": url_of(wh), "fpm_socket": None},
        "command": {"opcache": "command", "opcache_command": HOOK.format(
            path=web_rig1.deploy_path, url=wh.url("/hook.php"))},
    }[strategy]
    wh, host, settings = shop(web_rig1, tmp_path, **env)
    kind = strategy.split("-")[0]
    assert choose(host, settings) == kind  # preflight, before the switch
    go_live_stale(wh, host, settings)

    start = time.monotonic()
    reports = flush(host, settings, kind)
    took = time.monotonic() - start
    bodies = answers(wh, 48)
    print(f"\n{strategy}: flush {took * 1000:.0f} ms; {reports[0].line()}; "
          f"after: {sum(b.startswith('release A') for b in bodies)}/{len(bodies)} stale")
    assert releases(bodies) == {"B"}
    assert leftovers(wh, web_rig1) == []
    [report] = reports
    assert (report.host, report.strategy) == ("web1", kind)
    if kind == "command":
        assert (report.scripts_before, report.scripts_after, report.memory_freed) == (None,) * 3
        assert report.target == settings.opcache_command
        return
    assert report.target == (url_of(wh) if kind == "url" else settings.fpm_sockets[0])
    assert report.scripts_before >= N_LIB + 1  # A's index.php and its library
    assert report.scripts_after <= 1  # at most the one-time script itself
    assert report.memory_freed > 0
    assert report.warning == ""
    assert f"{report.scripts_before} -> {report.scripts_after} cached scripts" in report.line()


def test_every_listed_pool_is_reset_with_its_own_report(web_rig1, tmp_path):
    web_rig1.start_web(tcp=True)
    wh = web_rig1.host("web1")
    sockets = f"{wh.fpm_socket} {wh.fpm_tcp}"
    wh, host, settings = shop(web_rig1, tmp_path, opcache="fcgi", fpm_socket=sockets)
    go_live_stale(wh, host, settings)
    reports = flush(host, settings, choose(host, settings))
    assert [r.target for r in reports] == [wh.fpm_socket, wh.fpm_tcp]
    assert reports[0].scripts_before >= N_LIB + 1
    assert releases(answers(wh)) == {"B"}
    assert leftovers(wh, web_rig1) == []


def test_auto_finds_the_one_socket_and_refuses_to_guess_between_several(
    web_rig1, tmp_path, monkeypatch
):
    # The usual places (/run/php ...) are the machine's; look where the rig's FPM listens.
    monkeypatch.setattr(opcache, "SOCKET_GLOBS", ("/srv/run/*.sock", "/srv/alias/*.sock"))
    wh, host, settings = shop(web_rig1, tmp_path, opcache="auto", fpm_socket=None)
    # Debian's /run/php/php-fpm.sock is a symlink to the versioned socket: still one.
    wh.sh("mkdir /srv/alias && ln -s /srv/run/php-fpm.sock /srv/alias/php-fpm.sock")
    assert opcache.discover_sockets(host) == [wh.fpm_socket]
    assert choose(host, settings) == "fcgi"
    go_live_stale(wh, host, settings)
    [report] = flush(host, settings, "fcgi")
    assert report.target == wh.fpm_socket
    assert releases(answers(wh)) == {"B"}

    wh.sh("php -r 'stream_socket_server(\"unix:///srv/run/php7.4-fpm.sock\");'")
    with pytest.raises(OpcacheError) as err:
        choose(host, settings)
    assert "several PHP-FPM sockets found: /srv/run/php-fpm.sock, /srv/run/php7.4-fpm.sock" in (
        str(err.value))
    assert "set DEPLOY_FPM_SOCKET" in str(err.value)


def test_auto_without_socket_is_an_error_and_none_warns_that_php_may_serve_the_old_release(
    web_rig1, tmp_path, monkeypatch
):
    monkeypatch.setattr(opcache, "SOCKET_GLOBS", ("/srv/nothing/*.sock",))
    wh, host, settings = shop(web_rig1, tmp_path, opcache="auto", fpm_socket=None)
    with pytest.raises(OpcacheError) as err:
        choose(host, settings)
    assert "no PHP-FPM socket found in /srv/nothing/*.sock" in str(err.value)
    assert "DEPLOY_FPM_SOCKET" in str(err.value) and "127.0.0.1:9000" in str(err.value)

    settings = load(web_rig1.env(opcache="none"), cwd=tmp_path, require_repo=False)
    assert choose(host, settings) == "none"
    assert flush(host, settings, "none") == [FlushReport(
        "web1", "none", "", None, None, None,
        "OPcache not flushed (DEPLOY_OPCACHE=none): PHP may keep serving the old release")]


def test_flush_under_continuous_load_waits_for_the_restart(web_rig1, tmp_path):
    """OPcache restarts only at an instant when no worker is inside a request; the flush
    waits for it, so it returns without a warning and no answer started after it is stale.

    Counts, not durations: the load runs until it has 50 answers from before the flush and
    50 started after the flush returned (each polled to a deadline)."""
    wh, host, settings = shop(web_rig1, tmp_path, opcache="fcgi")
    go_live_stale(wh, host, settings)
    stop, log = threading.Event(), []

    def load() -> None:
        while not stop.is_set():
            started = time.monotonic()
            with urllib.request.urlopen(wh.url("/index.php"), timeout=10) as resp:
                log.append((started, resp.read().decode().split()[1]))

    def wait_for(count: int, since: float) -> None:
        deadline = time.monotonic() + 20
        while sum(t > since for t, _ in list(log)) < count:
            assert time.monotonic() < deadline, f"load stalled: {len(log)} answers"
            time.sleep(0.01)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        wait_for(50, since=0.0)
        [report] = flush(host, settings, "fcgi")
        done = time.monotonic()
        wait_for(50, since=done)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    before = [r for t, r in log if t < done]
    after = [r for t, r in log if t > done]
    print(f"\nunder load (8 clients, 4 workers): {before.count('A')}/{len(before)} stale "
          f"before the flush returned, {after.count('A')}/{len(after)} after; {report.line()}")
    assert "A" in before, "no stale answer before the flush: nothing was proven"
    assert report.warning == "", report.line()
    assert after.count("A") == 0 and len(after) >= 50


# --------------------------------------------------------------------------- failures


def assert_fails(host: Host, settings: Settings, strategy: str, *needles: str) -> str:
    """Both the preflight (choose) and the flush raise, naming every needle."""
    messages = []
    for call in (lambda: choose(host, settings), lambda: flush(host, settings, strategy)):
        with pytest.raises(OpcacheError) as err:
            call()
        messages.append(str(err.value))
        for needle in needles:
            assert needle in str(err.value)
    return messages[1]


def test_socket_the_deploy_user_cannot_write_to(web_rig1, tmp_path):
    wh, host, settings = shop(web_rig1, tmp_path, opcache="fcgi")
    wh.sh(f"chmod 000 {wh.fpm_socket}")
    message = assert_fails(host, settings, "fcgi", "[web1]", "(fcgi /srv/run/php-fpm.sock)",
                           "Permission denied", "listen.mode = 0660")
    print("\n" + message)
    assert leftovers(wh, web_rig1) == []


def test_wrong_socket_path(web_rig1, tmp_path):
    wh, host, settings = shop(web_rig1, tmp_path, opcache="fcgi", fpm_socket="/srv/run/no.sock")
    print("\n" + assert_fails(host, settings, "fcgi", "/srv/run/no.sock", "No such file"))
    assert leftovers(wh, web_rig1) == []


def test_nothing_listening_on_the_tcp_port(web_rig1, tmp_path):
    wh = web_rig1.host("web1")
    target = f"{wh.address}:1"
    wh, host, settings = shop(web_rig1, tmp_path, opcache="fcgi", fpm_socket=target)
    assert_fails(host, settings, "fcgi", target, "Connection refused", "is PHP-FPM listening")
    assert leftovers(wh, web_rig1) == []


def test_fpm_without_opcache(web_rig1, tmp_path):
    web_rig1.start_web(opcache=False)
    wh, host, settings = shop(web_rig1, tmp_path, opcache="fcgi")
    print("\n" + assert_fails(host, settings, "fcgi", "OPcache is disabled in this pool"))
    assert leftovers(wh, web_rig1) == []


POOLS = {  # a pool misconfiguration -> what the error must say
    "noopcache": ("php_admin_value[opcache.enable] = 0", "OPcache is disabled in this pool"),
    "restricted": ("php_admin_value[opcache.restrict_api] = /srv/shop/releases",
                   "opcache.restrict_api='/srv/shop/releases' of the pool does not allow"),
    "basedir": ("php_admin_value[open_basedir] = /srv/shop/releases", "open_basedir"),
    "limited": ("security.limit_extensions = .php7", "security.limit_extensions"),
    "chrooted": ("chroot = /srv/shop/releases", "PHP-FPM cannot see /srv/shop/.opcache-"),
    "allowlist": ("listen.allowed_clients = 10.9.9.9", "closed the connection without an answer"),
}


def pool_target(wh: WebHost, name: str) -> str:
    """The allowlist pool listens on TCP (allowed_clients applies to TCP only)."""
    if name != "allowlist":
        return f"/srv/run/{name}.sock"
    with socket.socket() as sock:
        sock.bind((wh.address, 0))
        return f"{wh.address}:{sock.getsockname()[1]}"


def start_extra_fpm(wh: WebHost) -> dict[str, str]:
    """A second FPM master inside the host, one pool per entry of :data:`POOLS`."""
    conf = ("[global]\npid = /srv/run/extra-fpm.pid\nerror_log = /srv/log/extra-fpm.log\n"
            "daemonize = yes\n")
    targets = {name: pool_target(wh, name) for name in POOLS}
    for name, (line, _) in POOLS.items():
        conf += (f"[{name}]\nuser = {DEPLOY_USER}\ngroup = {DEPLOY_USER}\n"
                 f"listen = {targets[name]}\nlisten.owner = {DEPLOY_USER}\n"
                 f"listen.mode = 0600\npm = static\npm.max_children = 1\n{line}\n")
    wh.inside("/srv/run/extra-fpm.conf").write_text(conf)
    wh.sh(f"{PHP_FPM} -y /srv/run/extra-fpm.conf")  # returns once the master is ready
    return targets


def test_pool_misconfigurations_are_named(web_rig1, tmp_path):
    wh, host, _ = shop(web_rig1, tmp_path)
    targets = start_extra_fpm(wh)
    try:
        for name, (_, needle) in POOLS.items():
            sock = targets[name]
            settings = load(web_rig1.env(opcache="fcgi", fpm_socket=sock), cwd=tmp_path,
                            require_repo=False)
            message = assert_fails(host, settings, "fcgi", sock, needle)
            print(f"\n{message}")
            assert leftovers(wh, web_rig1) == []
    finally:
        wh.sh("kill $(cat /srv/run/extra-fpm.pid)")


def test_deploy_path_the_client_cannot_write(web_rig1, tmp_path):
    wh, host, settings = shop(web_rig1, tmp_path, opcache="fcgi")
    settings = Settings(deploy_path="/srv/run", opcache="fcgi", fpm_sockets=(wh.fpm_socket,))
    assert_fails(host, settings, "fcgi", "cannot write the one-time script /srv/run/.opcache-",
                 "Permission denied")


def test_url_script_refuses_requests_without_the_token(web_rig1, tmp_path, monkeypatch):
    wh = web_rig1.host("web1")
    web_rig1.start_web(extra_locations=documented_opcache_location())
    wh, host, settings = shop(web_rig1, tmp_path, opcache="url", opcache_url=url_of(wh))
    # The script itself, as the url strategy places it: 403 without / with a wrong token.
    name = f"opcache-reset-{'0' * 32}.php"
    script = wh.inside(f"{web_rig1.deploy_path}/releases/A/pub/{name}")
    script.write_text(opcache.RESET_SCRIPT.replace("@TOKEN@", "right-token"))
    for token in (None, "wrong-token", "right-token"):
        request = urllib.request.Request(wh.url(f"/{name}?op=reset"))
        if token:
            request.add_header("X-Opcache-Token", token)
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                status, body = resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read().decode()
        expected = (200, '"reset":true') if token == "right-token" else (403, "forbidden")
        assert (status, expected[1] in body) == (expected[0], True), (token, status, body)
    script.unlink()

    # A flush whose token does not match the script's is refused and cleans up.
    monkeypatch.setattr(opcache, "RESET_SCRIPT", opcache.RESET_SCRIPT.replace("@TOKEN@", "x"))
    message = assert_fails(host, settings, "url", url_of(wh), "refused the token (403)")
    print("\n" + message)
    assert leftovers(wh, web_rig1) == []


def test_url_needs_the_documented_location_on_magentos_nginx_rules(web_rig1, tmp_path):
    """Magento's nginx.conf.sample runs only its entry points and denies every other .php
    (403, answered by errors/404.php): without the block docs/opcache.md documents, the
    flush fails with the documented error and the one-time script never runs; with
    exactly that block, the same flush works."""
    wh = web_rig1.host("web1")
    assert wh.extra_locations == ""  # the rig's stock Magento rules
    url = url_of(wh)
    wh, host, settings = shop(web_rig1, tmp_path, opcache="url", opcache_url=url)
    go_live_stale(wh, host, settings)
    message = assert_fails(host, settings, "url", url,
                           "the web server answered 404 without running the script")
    print("\n" + message)
    assert releases(answers(wh, 8)) == {"A"}, "nothing ran, so PHP still serves A"
    assert leftovers(wh, web_rig1) == []

    web_rig1.start_web(extra_locations=documented_opcache_location())  # FPM restarts too
    point_current(host, settings, "A")
    go_live_stale(wh, host, settings)
    [report] = flush(host, settings, choose(host, settings))
    assert (report.strategy, report.warning) == ("url", "")
    assert releases(answers(wh)) == {"B"}
    assert leftovers(wh, web_rig1) == []


def test_url_nothing_listening(web_rig1, tmp_path):
    url = "http://shop.example.test:1/"
    wh, host, settings = shop(web_rig1, tmp_path, opcache="url", opcache_url=url)
    assert_fails(host, settings, "url", url, "cannot connect to the web server",
                 "Connection refused")
    assert leftovers(wh, web_rig1) == []


def test_failing_command_reports_its_exit_and_output(web_rig1, tmp_path):
    command = "echo 'sudo: a password is required' >&2; exit 3"
    wh, host, settings = shop(web_rig1, tmp_path, opcache="command", opcache_command=command)
    assert choose(host, settings) == "command"
    with pytest.raises(OpcacheError) as err:
        flush(host, settings, "command")
    assert "(command echo" in str(err.value)
    assert "exit 3" in str(err.value)
    assert "sudo: a password is required" in str(err.value)


def test_hanging_pool_times_out_and_a_killed_client_leaves_no_script(
    web_rig1, tmp_path, monkeypatch
):
    wh, host, settings = shop(web_rig1, tmp_path, opcache="fcgi", fpm_socket="/srv/log/hang.sock")
    # A socket that accepts connections and never answers: a hung pool.
    pid = wh.sh("php -r '$s = stream_socket_server(\"unix:///srv/log/hang.sock\"); sleep(60);' "
                ">/dev/null 2>&1 & echo $!", user=DEPLOY_USER).stdout.strip()
    try:
        wh.sh("for i in $(seq 100); do [ -S /srv/log/hang.sock ] && exit; sleep 0.01; done; exit 1")
        monkeypatch.setattr(opcache, "TIMEOUT", 1)
        assert_fails(host, settings, "fcgi", "/srv/log/hang.sock", "did not answer within 1 s")
        assert leftovers(wh, web_rig1) == []
        # The whole remote command killed mid-request (no PHP finally, no shell rm): the
        # one-time script is still removed, by the cleanup command sent from Python.
        killer = dataclasses.replace(settings, php="(sleep 0.5; kill -9 0) & php")
        with pytest.raises(OpcacheError) as err:
            flush(host, killer, "fcgi")
        assert "the PHP client did not run" in str(err.value)
        assert leftovers(wh, web_rig1) == []
    finally:
        wh.sh(f"kill {pid}")


def test_missing_php_cli(web_rig1, tmp_path):
    wh, host, settings = shop(web_rig1, tmp_path, opcache="fcgi", php="php9.9")
    assert_fails(host, settings, "fcgi", "the PHP client did not run (`php9.9`, exit 127",
                 "command not found")
    assert leftovers(wh, web_rig1) == []


def test_url_preflight_before_the_first_release(web_rig1, tmp_path):
    """No ``current`` yet: nothing to probe through; the flush after the switch checks."""
    wh = web_rig1.host("web1")
    host = Host("web1", web_rig1.connection("web1"), echo=False)
    env = web_rig1.env(opcache="url", opcache_url=url_of(wh))
    assert choose(host, load(env, cwd=tmp_path, require_repo=False)) == "url"


# --------------------------------------------------------------------------- local host


def test_local_host_runs_the_same_client(web_rig1, tmp_path):
    """``Host.named('local')``: the client runs here, FPM (in web1's namespace) sees the file
    through the machine's /var/tmp, where the rig keeps web1's /srv."""
    wh, host, settings = shop(web_rig1, tmp_path)
    go_live_stale(wh, host, settings)
    local = Settings(deploy_path=str(wh.inside(web_rig1.deploy_path)), opcache="fcgi",
                     fpm_sockets=(str(wh.inside(wh.fpm_socket)),))
    [report] = flush(Host.named("local", echo=False), local, "fcgi")
    assert report.host == "local"
    assert report.scripts_before >= N_LIB + 1
    assert releases(answers(wh)) == {"B"}
    assert not [p for p in os.listdir(local.deploy_path) if "opcache" in p]
