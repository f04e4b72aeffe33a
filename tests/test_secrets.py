"""A token in ``DEPLOY_REPO`` is used, and appears nowhere: not in output, not on a host.

The repository is served over HTTP on loopback with Basic authentication (git's "dumb"
HTTP protocol: static files of a bare repo), so the token is really needed. After a
successful deploy, a failed one and a dry run, every byte printed and every file under
the host's ``/srv`` is searched for the token and for its Basic-auth encoding.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from scenario import Shop

pytestmark = pytest.mark.real_hosts

TOKEN = "glpat-S3cr3tT0k3n-4242"
BASIC = base64.b64encode(f"deploy:{TOKEN}".encode()).decode()


class _AuthHandler(SimpleHTTPRequestHandler):
    """Static files of the bare repo, only with the right Basic credentials."""

    seen: list[str]

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.seen.append(self.headers.get("Authorization", ""))
        if self.headers.get("Authorization") != f"Basic {BASIC}":
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def git_over_http(shop: Shop) -> Iterator[tuple[str, list[str]]]:
    """Serve a bare copy of the shop's repo; yield (base URL, Authorization headers seen)."""
    root = shop.rig.common / "http"
    bare = root / "shop.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(shop.repo), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    seen: list[str] = []
    handler = type("Handler", (_AuthHandler,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def leaks(text: str) -> list[str]:
    return [s for s in (TOKEN, BASIC) if s in text]


def files_with_secret(host) -> str:
    """Files on the host holding the secret (the test's own fault file excepted)."""
    return host.sh(f"grep -rlF --exclude=faults.json -e {TOKEN} -e {BASIC} /srv || true"
                   ).stdout.strip()


def test_a_token_in_the_repo_url_is_used_but_never_printed_or_stored(rig1) -> None:
    shop = Shop(rig1)
    web1 = rig1.host("web1")
    with git_over_http(shop) as (address, seen):
        repo = f"http://deploy:{TOKEN}@{address}/shop.git"
        dry = shop.fab("deploy", "--dry", repo=repo)
        assert dry.returncode == 0 and leaks(dry.stdout + dry.stderr) == []

        ok = shop.fab("deploy", repo=repo)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert f"Basic {BASIC}" in seen, "the credentials reached the server"
        assert leaks(ok.stdout + ok.stderr) == []

        bad_ref = shop.fab("deploy", "--ref=no-such-branch", repo=repo)
        assert bad_ref.returncode == 1 and "no-such-branch" in bad_ref.stderr
        assert leaks(bad_ref.stdout + bad_ref.stderr) == []
        assert f"http://{address}/shop.git" in bad_ref.stderr

        shop.commit(label="v2")
        subprocess.run(["git", "-C", str(shop.rig.common / "http/shop.git"), "fetch", "-q",
                        str(shop.repo), "main:main"], check=True)
        subprocess.run(["git", "-C", str(shop.rig.common / "http/shop.git"),
                        "update-server-info"], check=True)
        shop.faults(web1, {"setup:di:compile": {"exit": 1, "message": f"boom {repo}"}})
        failed = shop.fab("deploy", repo=repo)
        assert failed.returncode == 1 and "boom" in failed.stderr
        assert leaks(failed.stdout + failed.stderr) == []

        wrong = shop.fab("deploy", repo=repo.replace(TOKEN, "wrong-token-1234"))
        assert wrong.returncode == 1 and "wrong-token-1234" not in wrong.stderr
    assert files_with_secret(web1) == ""
    config = web1.inside("/srv/shop/repo.git/config").read_text()
    assert f"url = http://{address}/shop.git" in config
    history = list(web1.inside("/srv/shop/history").glob("*.json"))
    assert any('"failed"' in p.read_text() for p in history), "the failed release was recorded"


def test_redaction_masks_user_token_and_token_only_urls() -> None:
    from fabric_magento_deploy.redact import redact, register, split
    register("https://x-access-token:ghp_abcdef123456@github.com/org/shop.git")
    register("https://glpat-onlytoken99@gitlab.example/shop.git")
    text = redact("fatal: https://x-access-token:ghp_abcdef123456@github.com and "
                  "https://glpat-onlytoken99@gitlab.example")
    assert "ghp_abcdef123456" not in text and "glpat-onlytoken99" not in text
    assert split("git@github.com:org/shop.git") == ("git@github.com:org/shop.git", "")
    assert split("https://u:p%40ss@h/x")[0] == "https://h/x"
    assert base64.b64decode(split("https://u:p%40ss@h/x")[1].split()[1]) == b"u:p@ss"
