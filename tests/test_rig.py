"""Tests of the test rig itself: if these fail, no deploy test result can be trusted.

They check the properties the deploy tests rely on: hosts reached by name over SSH as the
deploy user, one filesystem per host under the same paths, a directory shared by all,
nginx + php-fpm serving the ``current`` release with production OPcache (and so the stale
realpath behaviour that deploys must handle), production-shaped shop vhosts (name, TLS with
a CA only the hosts trust, https redirect, basic auth, same ports on every host, bound to
the host's own address), and a cleanup that leaves nothing running.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import conftest
import pytest
import rig as rig_module
from load import HttpLoad, Sample, classify, classify_asset, linked_assets
from rig import (
    HTTP_PORT,
    HTTPS_PORT,
    RIG_PREFIX,
    SYSTEM_CA_BUNDLE,
    Rig,
    WebHost,
    make_rig,
    reap_stale_rigs,
)

HERE = Path(__file__).resolve().parent


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _release(host: WebHost, number: int, label: str, *, switch: bool = True) -> None:
    """A tiny release: pub/index.php printing ``label=...``, a static file, ``current``."""
    release = f"/srv/shop/releases/{number}"
    script = f"""
        mkdir -p {release}/pub/static/frontend
        printf '%s\\n' '<?php' 'echo "label={label}\\n";' > {release}/pub/index.php
        echo 'body {{}}' > {release}/pub/static/frontend/styles.css
    """
    if switch:
        script += f"ln -sfn {release} /srv/shop/current.tmp && mv -T /srv/shop/current.tmp "
        script += "/srv/shop/current\n"
    host.sh(textwrap.dedent(script), user="deployer")


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read().decode()


# --------------------------------------------------------------------------- SSH


def test_three_hosts_answer_over_fabric_and_openssh_as_deployer(rig3: Rig) -> None:
    addresses = set()
    for host in rig3.hosts:
        conn = rig3.connection(host.name)
        result = conn.run("whoami; pwd; echo $HOME", hide=True, in_stream=False)
        assert result.stdout.split() == ["deployer", "/home/deployer", "/home/deployer"]
        conn.put(io.StringIO("via sftp\n"), "/srv/shop/uploaded")
        assert host.inside("/srv/shop/uploaded").read_text() == "via sftp\n"
        addresses.add(host.address)
    assert len(addresses) == 3
    assert len({a.rsplit(".", 1)[0] for a in addresses}) == 1  # one /24 per rig

    openssh = subprocess.run(
        rig3.ssh_argv("web3", "whoami"), capture_output=True, text=True, timeout=20
    )
    assert (openssh.returncode, openssh.stdout) == (0, "deployer\n"), openssh.stderr


def test_fab_cli_reaches_hosts_through_the_ssh_config(rig3: Rig) -> None:
    env = rig3.env(repo="/nowhere")
    assert env["DEPLOY_PATH"] == "/srv/shop"
    assert env["DEPLOY_HOSTS"] == "web1,web2,web3"
    assert env["DEPLOY_REPO"] == "/nowhere"
    assert "DEPLOY_FPM_SOCKET" not in env  # no FPM running on this rig
    fab = Path(sys.executable).with_name("fab")
    proc = subprocess.run(
        [str(fab), "-S", str(rig3.ssh_config), "-H", "web1,web3", "--", "whoami"],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["deployer", "deployer"]


def test_each_host_has_its_own_srv_and_all_share_common(rig3: Rig) -> None:
    web1, web2, web3 = (rig3.connection(h.name) for h in rig3.hosts)
    web1.run("echo one > /srv/shop/x", in_stream=False)
    assert web2.run("test -e /srv/shop/x", warn=True, in_stream=False).failed
    assert rig3.host("web1").inside("/srv/shop/x").read_text() == "one\n"
    assert not rig3.host("web2").inside("/srv/shop/x").exists()
    assert not Path("/srv/shop/x").exists()  # nothing leaked into the machine's /srv
    owner = web3.run("stat -c %U /srv/shop", hide=True, in_stream=False).stdout.strip()
    assert owner == "deployer"

    web1.run(f"echo shared > {rig3.common}/db.txt", in_stream=False)
    seen = web3.run(f"cat {rig3.common}/db.txt", hide=True, in_stream=False).stdout
    assert seen == "shared\n"
    assert (rig3.common / "db.txt").read_text() == "shared\n"


# --------------------------------------------------------------------------- web


def test_nginx_and_fpm_serve_each_hosts_current_release_with_opcache(web_rig3: Rig) -> None:
    for host in web_rig3.hosts:
        _release(host, 1, f"r1-{host.name}")
    for host in web_rig3.hosts:
        assert _get(host.url("/some/category.html")) == (200, f"label=r1-{host.name}\n")
        status, css = _get(host.url("/static/version1700000000/frontend/styles.css"))
        assert (status, css) == (200, "body {}\n")

    web1 = web_rig3.host("web1")
    # An entry point Magento's nginx rules let run (any other .php is denied).
    probe = "/srv/shop/current/pub/health_check.php"
    web1.sh(
        f"""cat > {probe} <<'PHP'
<?php
$s = opcache_get_status(false);
echo json_encode([
    'enabled' => $s['opcache_enabled'],
    'validate' => ini_get('opcache.validate_timestamps'),
    'user' => posix_getpwuid(posix_geteuid())['name'],
]);
PHP""",
        user="deployer",
    )
    status, body = web1.fastcgi(probe)
    assert status == 200, body
    assert json.loads(body) == {"enabled": True, "validate": "0", "user": "deployer"}
    assert json.loads(_get(web1.url("/health_check.php"))[1])["enabled"] is True

    # validate_timestamps=0: an edited file keeps being served from OPcache until a reset.
    _release(web1, 1, "edited", switch=False)
    assert _get(web1.url())[1] == "label=r1-web1\n"
    web1.fpm_reload()
    assert _get(web1.url())[1] == "label=edited\n"


def test_deployer_reaches_the_fpm_socket_and_the_tcp_pool(rig1: Rig) -> None:
    rig1.start_web(tcp=True)
    host = rig1.hosts[0]
    assert rig1.env()["DEPLOY_FPM_SOCKET"] == "/srv/run/php-fpm.sock"
    conn = rig1.connection("web1")
    php = (
        'php -r \'$s = stream_socket_client("unix:///srv/run/php-fpm.sock", $no, $err, 2);'
        ' echo $s ? "connected" : $err;\''
    )
    assert conn.run(php, hide=True, in_stream=False).stdout == "connected"
    mode = conn.run("stat -c '%A %U' /srv/run/php-fpm.sock", hide=True, in_stream=False)
    assert mode.stdout.split() == ["srw-rw----", "deployer"]

    assert host.fpm_tcp and host.fpm_tcp.startswith(host.address + ":")
    host.sh("mkdir -p /srv/shop/t && echo '<?php echo php_sapi_name();' > /srv/shop/t/s.php")
    assert host.fastcgi("/srv/shop/t/s.php", tcp=True) == (200, "fpm-fcgi")


def _wait(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``condition`` to a deadline (never a fixed sleep: the machine may be busy)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _restart_pending(host: WebHost) -> bool:
    """Whether the pool still has an OPcache restart scheduled (asked inside the pool)."""
    host.sh("echo '<?php echo json_encode(opcache_get_status(false)[\"restart_pending\"]);' "
            "> /srv/shop/status.php", user="deployer")
    status, body = host.fastcgi("/srv/shop/status.php")
    assert status == 200, body
    return bool(json.loads(body))


def test_switching_current_leaves_fpm_serving_the_old_release(web_rig1: Rig) -> None:
    """The rig reproduces the stale-release bug deploys must fix ($document_root + realpath
    cache), and an ``opcache_reset()`` run inside the pool cures it: once the pool says
    its restart is done, no answer that started afterwards is stale."""
    host = web_rig1.hosts[0]
    _release(host, 1, "old")
    with HttpLoad.on_rig(web_rig1, threads_per_host=4, pause=0.002) as load:
        load.wait_ok()
        # Every worker serves release 1 (and caches its realpath) long before this count.
        _wait(lambda: len(load.ok()) >= 20 * rig_module.FPM_WORKERS, "answers from release 1")
        _release(host, 2, "new")
        switched = time.time()
        load.wait_after(switched, count=50)
        stale = load.stale_after(switched, "old")
        host.sh("echo '<?php opcache_reset();' > /srv/shop/reset.php", user="deployer")
        assert host.fastcgi("/srv/shop/reset.php")[0] == 200
        _wait(lambda: not _restart_pending(host), "the OPcache restart")
        flushed = time.time()
        load.wait_after(flushed, count=50)
    assert load.failed() == [], load.summary()
    assert stale, f"expected stale responses after the switch\n{load.summary()}"
    assert load.labels() == {"web1": ["old", "new"]}
    assert load.stale_after(flushed, "old") == [], load.summary()


def _answer(url: str) -> tuple[int, str]:
    """(status, body) of a GET, error statuses included."""
    try:
        return _get(url)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


RULES_RELEASE = """
    mkdir -p {pub}/static/frontend {pub}/errors {pub}/media/catalog
    echo '<?php echo "index ", $_SERVER["REQUEST_URI"];' > {pub}/index.php
    echo '<?php http_response_code(404); echo "static.php ", $_GET["resource"];' \
        > {pub}/static.php
    echo '<?php http_response_code(404); echo "get.php ", $_SERVER["REQUEST_URI"];' \
        > {pub}/get.php
    echo '<?php http_response_code(404); echo "errors/404.php";' > {pub}/errors/404.php
    echo '<?php echo "other";' > {pub}/other.php
    echo '<?php echo "template";' > {pub}/page.phtml
    echo 'deny' > {pub}/.htaccess
    echo '<x/>' > {pub}/errors/local.xml
    echo 'body {{}}' > {pub}/static/frontend/styles.css
    echo 'jpg' > {pub}/media/catalog/a.jpg
    ln -sfn /srv/shop/releases/1 /srv/shop/current
"""

# URL -> (status, body) under Magento 2.4.7's nginx.conf.sample rules.
SAMPLE_RULES = {
    "/some/category.html": (200, "index /some/category.html"),
    "/static/version1700000000/frontend/styles.css": (200, "body {}\n"),
    "/static/frontend/styles.css": (200, "body {}\n"),
    # The signature is stripped only when it is digits: anything else reaches static.php.
    "/static/version20261201.100055.601/frontend/styles.css":
        (404, "static.php version20261201.100055.601/frontend/styles.css"),
    "/static/version17/frontend/missing.css": (404, "static.php frontend/missing.css"),
    "/static/frontend/missing.txt": (404, "static.php frontend/missing.txt"),
    "/media/catalog/a.jpg": (200, "jpg\n"),
    "/media/catalog/b.jpg": (404, "get.php /media/catalog/b.jpg"),
    # Only entry points run PHP; the rest is denied, and 403 is answered by errors/404.php.
    "/other.php": (404, "errors/404.php"),
    "/page.phtml": (404, "errors/404.php"),
    "/.htaccess": (404, "errors/404.php"),
    "/.git/config": (404, "errors/404.php"),
    "/errors/local.xml": (404, "errors/404.php"),
    "/media/customer/a.jpg": (404, "errors/404.php"),
}


def test_nginx_follows_magentos_sample_rules(web_rig1: Rig) -> None:
    host = web_rig1.hosts[0]
    host.sh(RULES_RELEASE.format(pub="/srv/shop/releases/1/pub"), user="deployer")
    assert {url: _answer(host.url(url)) for url in SAMPLE_RULES} == SAMPLE_RULES

    # An operator's extra location goes before the final deny; a restart without it
    # brings back the stock rules.
    extra = "location = /other.php {\n    fastcgi_pass fastcgi_backend;\n" \
            "    fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n" \
            "    include fastcgi_params;\n}\n"
    web_rig1.start_web(extra_locations=extra)
    assert (host.extra_locations, _answer(host.url("/other.php"))) == (extra, (200, "other"))
    web_rig1.start_web()
    assert _answer(host.url("/other.php")) == (404, "errors/404.php")


# --------------------------------------------------------------------------- shop vhost, TLS


def _require_tls() -> None:
    conftest.require_real_hosts(web=True)
    missing = rig_module.missing_requirements(web=True, tls=True)
    if missing:
        rig_module.skip_or_fail("rig TLS unavailable: " + "; ".join(missing))


@pytest.fixture
def tls_rig2() -> Iterator[Rig]:
    """Two hosts with sshd, no web server yet (the test chooses the vhost shape)."""
    _require_tls()
    rig = make_rig(2)
    try:
        yield rig
    finally:
        rig.stop()


HEALTH_CHECK = """\
mkdir -p /srv/shop/releases/1/pub
cat > /srv/shop/releases/1/pub/health_check.php <<'PHP'
<?php
echo json_encode(['host' => '{name}', 'https' => $_SERVER['HTTPS'] ?? null,
                  'name' => $_SERVER['HTTP_HOST'] ?? null]);
PHP
ln -sfn /srv/shop/releases/1 /srv/shop/current
"""


def _curl(via: WebHost, target: WebHost, url: str, *options: str) -> tuple[int, int, str, str, str]:
    """curl ``url`` inside ``via``, the shop name resolved to ``target``'s address:
    (exit code, HTTP status, Location of a redirect, body, stderr)."""
    argv = ["curl", "-sS", "--max-time", "10", *target.curl_resolve(), *options,
            "-w", "\n%{http_code} %{redirect_url}", url]
    proc = via.sh(shlex.join(argv), check=False)
    body, _, tail = proc.stdout.rpartition("\n")
    status, _, location = tail.partition(" ")
    return proc.returncode, int(status or 0), location, body, proc.stderr


# Inside a host: PHP's curl and PHP's OpenSSL streams, with their default trust store.
PHP_TLS_PROBE = r"""<?php
[, $url, $resolve, $address, $name] = $argv;
$c = curl_init($url);
curl_setopt_array($c, [CURLOPT_RESOLVE => [$resolve], CURLOPT_RETURNTRANSFER => true,
                       CURLOPT_TIMEOUT => 10]);
$body = curl_exec($c);
$context = stream_context_create(['ssl' => ['peer_name' => $name]]);
$stream = @stream_socket_client("tls://$address", $errno, $errstr, 10,
                                STREAM_CLIENT_CONNECT, $context);
echo json_encode(['curl' => $body === false ? 'error: ' . curl_error($c) : $body,
                  'stream' => $stream !== false]);
"""


def _php_tls(host: WebHost) -> dict:
    """What PHP on ``host`` gets from its own https vhost (curl body, stream handshake)."""
    host.sh("cat > /srv/shop/tls_probe.php", input=PHP_TLS_PROBE, user="deployer")
    resolve = f"{host.shop_name}:{host.https_port}:{host.address}"
    args = [host.shop_url("/health_check.php"), resolve, f"{host.address}:{host.https_port}",
            str(host.shop_name)]
    out = host.sh(shlex.join(["php", "/srv/shop/tls_probe.php", *args]), user="deployer")
    return json.loads(out.stdout)


def _handshake(host: WebHost, context: ssl.SSLContext) -> dict:
    """TLS handshake from the test process (the machine, not a host) with SNI."""
    with socket.create_connection((host.address, host.https_port or 0), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host.shop_name) as tls:
            return tls.getpeercert() or {}


def test_shop_vhost_with_the_rig_ca_is_trusted_on_the_hosts_and_nowhere_else(
    tls_rig2: Rig,
) -> None:
    rig = tls_rig2
    machine_bundle = Path(SYSTEM_CA_BUNDLE).read_bytes()
    rig.start_web(shop_name="shop.test", tls="ca")
    web1, web2 = rig.hosts
    for host in rig.hosts:
        host.sh(HEALTH_CHECK.format(name=host.name), user="deployer")
        # One HTTP and one HTTPS port for the whole rig, bound to the host's address only.
        assert (host.http_port, host.https_port) == (rig.http_port, rig.https_port)
        assert host.listening() == {(host.address, rig.http_port), (host.address, rig.https_port)}
        assert host.trusts_rig_ca and host.tls == "ca"
    assert rig.ca_cert == rig.tls_dir / "ca.crt"

    # curl on each host verifies its own certificate, and the other host's (same CA).
    for via, target in ((web1, web1), (web2, web2), (web1, web2)):
        url = target.shop_url("/health_check.php")
        assert url.startswith("https://shop.test")
        code, status, _, body, err = _curl(via, target, url)
        assert (code, status) == (0, 200), err
        assert json.loads(body) == {"host": target.name, "https": "on",
                                    "name": urlsplit(url).netloc}
    # The https server hands PHP "HTTPS on" itself, as Magento setups do (Debian's
    # fastcgi_params would also pass $https, so only the config tells them apart).
    servers = (web1._etc / "nginx.conf").read_text().split("    server {\n")[1:]
    assert [("ssl;" in block, "fastcgi_param HTTPS on;" in block) for block in servers] == [
        (False, False), (False, False), (True, True)]
    # PHP on the host trusts it too: curl extension and OpenSSL streams.
    assert _php_tls(web1) == {"curl": body.replace("web2", "web1"), "stream": True}

    # The name over plain http is served (no redirect asked), without HTTPS.
    code, status, _, body, err = _curl(web2, web2, web2.shop_url("/health_check.php", https=False))
    assert (code, status, json.loads(body)["https"]) == (0, 200, None), err
    # The default server still answers by address, from the machine.
    assert json.loads(_get(web1.url("/health_check.php"))[1])["host"] == "web1"

    # Nothing of the rig answers on 127.0.0.1 (nginx is bound to the host's address).
    for scheme, port in (("http", rig.http_port), ("https", rig.https_port)):
        proc = web1.sh(f"curl -sSk --max-time 5 --resolve shop.test:{port}:127.0.0.1 "
                       f"{scheme}://shop.test:{port}/health_check.php", check=False)
        assert '"host":"web1"' not in proc.stdout, proc.stdout

    # Outside the hosts nothing trusts the rig's CA, unless given it explicitly.
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(web1, ssl.create_default_context())
    cert = _handshake(web1, ssl.create_default_context(cafile=str(rig.ca_cert)))
    assert cert["subjectAltName"] == (("DNS", "shop.test"),)
    assert Path(SYSTEM_CA_BUNDLE).read_bytes() == machine_bundle
    assert rig.ca_cert.read_text().strip() not in machine_bundle.decode()
    assert rig.ca_cert.read_text().strip() in web2.sh(f"cat {SYSTEM_CA_BUNDLE}").stdout


def test_self_signed_shop_with_https_redirect_and_basic_auth(rig1: Rig) -> None:
    _require_tls()
    host = rig1.hosts[0]
    for bad in ({"tls": "ca"}, {"shop_name": "shop.test", "redirect_https": True},
                {"shop_name": "shop.test", "tls": "maybe"}, {"shop_name": "Shop test"},
                {"shop_name": "shop.test", "basic_auth": ("a:b", "pw")}):
        with pytest.raises(ValueError):
            rig1.start_web(**bad)  # type: ignore[arg-type]
    assert host.daemon_pid("nginx") is None  # refused before anything started

    password = "s3cret: pass"
    rig1.start_web(shop_name="shop.test", tls="self-signed", redirect_https=True,
                   basic_auth=("shopper", password))
    host.sh(HEALTH_CHECK.format(name=host.name), user="deployer")
    url = host.shop_url("/health_check.php")
    assert host.listening() == {(host.address, rig1.http_port), (host.address, rig1.https_port)}

    # Nobody trusts a self-signed certificate: neither curl nor PHP on the host.
    code, _, _, _, err = _curl(host, host, url)
    assert code == 60 and "self-signed certificate" in err, err
    php = _php_tls(host)
    assert php["curl"].startswith("error: SSL certificate problem") and not php["stream"], php
    assert not host.trusts_rig_ca
    assert host.sh(f"cat {SYSTEM_CA_BUNDLE}").stdout == Path(SYSTEM_CA_BUNDLE).read_text()

    # Given the certificate: basic auth on the shop, 401 without (or with wrong) credentials.
    cacert = ("--cacert", str(host.tls_cert))
    assert _curl(host, host, url, *cacert)[:2] == (0, 401)
    assert _curl(host, host, url, *cacert, "-u", "shopper:wrong")[:2] == (0, 401)
    code, status, _, body, err = _curl(host, host, url, *cacert, "-u", f"shopper:{password}")
    assert (code, status, json.loads(body)["https"]) == (0, 200, "on"), err

    # The name over http only redirects, path and query kept (and asks for no password).
    plain = host.shop_url("/health_check.php?from=http", https=False)
    https_netloc = "shop.test" if rig1.https_port == HTTPS_PORT else f"shop.test:{rig1.https_port}"
    assert _curl(host, host, plain)[:3] == (
        0, 301, f"https://{https_netloc}/health_check.php?from=http")
    # The default server by address: no redirect, no password, as for every other test.
    default = json.loads(_get(host.url("/health_check.php"))[1])
    assert (default["host"], default["https"]) == ("web1", None)
    assert default["name"].partition(":")[0] == host.address

    # A restart without shop_name removes the vhost: the name falls to the default server.
    rig1.start_web()
    assert (host.shop_name, host.https_port) == (None, None)
    assert host.listening() == {(host.address, rig1.http_port)}
    body = host.sh(f"curl -sS --max-time 10 --resolve shop.test:{rig1.http_port}:{host.address}"
                   f" {shlex.quote(plain)}").stdout
    assert json.loads(body) == {"host": "web1", "https": None, "name": urlsplit(plain).netloc}


def test_web_ports_are_common_to_all_hosts_when_one_host_has_them_taken() -> None:
    _require_tls()
    rig = make_rig(2)
    blockers = []
    try:
        web2 = rig.host("web2")
        for port in (HTTP_PORT, HTTPS_PORT):  # somebody else's server on web2's address
            sock = socket.socket()
            sock.bind((web2.address, port))
            sock.listen()
            blockers.append(sock)
        rig.start_web(shop_name="shop.test", tls="self-signed")
        assert rig.http_port not in (None, HTTP_PORT, HTTPS_PORT)
        assert rig.https_port not in (None, HTTP_PORT, HTTPS_PORT, rig.http_port)
        for host in rig.hosts:
            assert host.listening() == {(host.address, rig.http_port),
                                        (host.address, rig.https_port)}
            assert host.shop_url() == f"https://shop.test:{rig.https_port}/"
            assert host.url() == f"http://{host.address}:{rig.http_port}/"
            assert _curl(host, host, host.shop_url(), "-k")[:2] == (0, 404)  # no release yet
    finally:
        for sock in blockers:
            sock.close()
        rig.stop()


# --------------------------------------------------------------------------- cleanup


def test_stop_leaves_no_process_no_port_and_no_directory() -> None:
    conftest.require_real_hosts(web=True)
    rig = make_rig(2)
    try:
        rig.start_web(["web2"], tcp=True)
        # A process detached from its SSH session must be killed too.
        rig.connection("web1").run("nohup sleep 300 >/dev/null 2>&1 &", in_stream=False)
        web2 = rig.host("web2")
        pids = [pid for host in rig.hosts for pid in host.pids()]
        pids += [host._holder.pid for host in rig.hosts if host._holder]
        listening = [(h.address, h.ssh_port) for h in rig.hosts]
        listening += [(web2.address, web2.http_port or 0)]
        assert len(pids) >= 2 + 2 + 1 + 8 + 3  # holders, sshds, sleep, fpm, nginx
    finally:
        rig.stop()
    rig.stop()  # idempotent
    assert [pid for pid in pids if _alive(pid)] == []
    assert not rig.base.exists()
    for address in listening:
        with socket.socket() as sock:
            assert sock.connect_ex(address) != 0, address


def test_rig_of_a_killed_test_process_dies_with_it_and_is_reaped() -> None:
    conftest.require_real_hosts()
    child = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(HERE)!r})
        from rig import make_rig
        rig = make_rig(1)
        print(rig.base, rig.hosts[0].daemon_pid("sshd"), rig.hosts[0]._holder.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    base, *pids = proc.stdout.split()
    deadline = time.monotonic() + 5
    while any(_alive(int(pid)) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(_alive(int(pid)) for pid in pids)
    assert Path(base).name.startswith(RIG_PREFIX)
    reap_stale_rigs(Path(base).parent)  # a concurrent test run may have reaped it already
    assert not Path(base).exists()


# --------------------------------------------------------------------------- load


def _sample(t: float, host: str, status: int, label: str | None, body: str = "") -> Sample:
    return Sample(t, t + 0.01, host, status, label, body, classify(status, body))


def test_load_classifies_and_queries_responses() -> None:
    load = HttpLoad({"web1": "http://127.0.0.1:9/", "web2": "http://localhost:9/"})
    load._samples = [
        _sample(1.0, "web1", 200, "v1"),
        _sample(2.0, "web1", 503, None, "<h1>Service Temporarily Unavailable</h1>"),
        _sample(2.5, "web2", 503, None, "Backend fetch failed"),
        _sample(3.0, "web1", 0, None),
        _sample(4.0, "web2", 200, "v1"),
        _sample(5.0, "web1", 200, "v2"),
        _sample(6.0, "web2", 404, None, "Not Found"),
    ]
    assert [s.t_start for s in load.maintenance()] == [2.0]
    assert [s.t_start for s in load.failed()] == [2.5, 3.0, 6.0]
    assert load.labels() == {"web1": ["v1", "v2"], "web2": ["v1"]}
    assert load.window("maintenance") == (2.0, 2.01)
    assert load.window(label="v1") == (1.0, 4.01)
    assert load.window("ok", host="web2") == (4.0, 4.01)
    assert [s.t_start for s in load.stale_after(3.5, "v1")] == [4.0]
    assert load.stale_after(4.5, {"v1", "v0"}) == []
    assert "web1: 4 requests" in load.summary()


def test_load_finds_the_static_files_a_page_links() -> None:
    page = (
        '<link rel="stylesheet" href="/static/version17/frontend/a/b/en_US/css/styles-m.css"/>'
        '<script type="text/javascript" src="/static/version17/x.js?v=1&amp;w=2"></script>'
        '<link rel="icon" href="/media/favicon.ico"/><script src="http://cdn.example/x.js">'
        '<a href="/static/not-linked-by-a-tag.css">'
        '<link href="/static/version17/frontend/a/b/en_US/css/styles-m.css"/>'
    )
    assert linked_assets(page) == ["/static/version17/frontend/a/b/en_US/css/styles-m.css",
                                   "/static/version17/x.js?v=1&w=2"]
    assert [classify_asset(code) for code in (200, 304, 404, 503, 0)] == [
        "ok", "failed", "failed", "failed", "failed"]
    load = HttpLoad({"web1": "http://127.0.0.1:9/"})
    load._assets = [
        Sample(1.0, 1.1, "web1", 200, "A", "", "ok", path="/static/version1/x.css", asset=True),
        Sample(2.0, 2.1, "web1", 404, "B", "", "failed", path="/static/version2/x.css",
               asset=True),
    ]
    load._samples = [_sample(1.5, "web1", 200, "A"), _sample(2.2, "web1", 503, None, "maintenance")]
    assert [s.label for s in load.broken_assets()] == ["B"]
    assert load.static_versions() == {"web1": ["1", "2"]}
    assert [s.t_start for s in load.within(1.4, 1.6)] == [1.5]
    assert "2 assets, 1 broken" in load.summary()


def test_load_fetches_linked_static_files_from_the_same_host(web_rig1: Rig) -> None:
    host = web_rig1.hosts[0]
    _release(host, 1, "v")
    host.sh(
        """cat > /srv/shop/releases/1/pub/index.php <<'PHP'
<?php
echo "label=v\n";
echo '<link rel="stylesheet" href="/static/version1700000000/frontend/styles.css"/>', "\n";
echo '<link rel="stylesheet" href="/static/version1700000000/frontend/missing.css"/>', "\n";
PHP""",
        user="deployer",
    )
    with HttpLoad.on_rig(web_rig1) as load:
        load.wait_ok()
        load.wait_after(time.time(), count=3)
    assert load.failed() == [], load.summary()
    fetched = {(s.path, s.status, s.label) for s in load.assets("web1")}
    assert fetched == {("/static/version1700000000/frontend/styles.css", 200, "v"),
                       ("/static/version1700000000/frontend/missing.css", 404, "v")}
    assert {s.path for s in load.broken_assets()} == {
        "/static/version1700000000/frontend/missing.css"}
    assert load.static_versions() == {"web1": ["1700000000"]}


def test_load_refuses_anything_but_loopback() -> None:
    for url in ("http://10.0.0.1/", "http://192.168.1.1/", "https://127.0.0.1/", "http://x.y/"):
        with pytest.raises(ValueError):
            HttpLoad({"web1": url})


def test_load_stops_by_itself(web_rig1: Rig) -> None:
    _release(web_rig1.hosts[0], 1, "v")
    load = HttpLoad.on_rig(web_rig1, max_seconds=0.3).start()
    load.wait_ok()
    deadline = time.monotonic() + 5
    while load.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not load.running
    assert load.failed() == [], load.summary()
    assert load.labels() == {"web1": ["v"]}


# --------------------------------------------------------------------------- CI rule


def test_missing_tools_skip_locally_and_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "missing_requirements", lambda web=False: ["nginx missing"])
    monkeypatch.setattr(rig_module, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="nginx missing"):
        conftest.require_real_hosts(web=True)
    monkeypatch.setattr(rig_module, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true: refusing to skip"):
        conftest.require_real_hosts(web=True)


def test_ci_run_where_everything_skipped_fails(tmp_path: Path) -> None:
    for name in ("conftest.py", "rig.py"):
        (tmp_path / name).write_text((HERE / name).read_text())
    (tmp_path / "test_x.py").write_text("import pytest\ndef test_a():\n    pytest.skip('no')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    runs = {}
    for ci in ("", "true"):
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
            env={**env, "CI": ci},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        runs[ci] = (proc.returncode, proc.stdout)
    assert runs[""][0] == 0, runs[""][1]
    assert runs["true"][0] == 1, runs["true"][1]
    assert "no test passed" in runs["true"][1]
