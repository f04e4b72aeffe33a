"""A token in ``DEPLOY_REPO`` is used, and appears nowhere: not in output, not on a host.

The repository is served over HTTP on loopback with Basic authentication (git's "dumb"
HTTP protocol: static files of a bare repo), so the token is really needed. After a
successful deploy, a failed one and a dry run, every byte printed and every file under
the host's ``/srv`` is searched for the token and for its Basic-auth encoding.

The same for credentials in a URL inside any other setting (a hook's ``curl
http://user:TOKEN@...``, the OPcache and consumers commands) and for the values of the
variables named in ``DEPLOY_SECRETS``: ``fab config``, ``--dry``, ``--json``, a failing
hook's error and the failed release's record on the host show ``***``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import shlex
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from scenario import FAB, ROOT, Shop

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


# Credentials in the URLs of other settings, and a variable named in DEPLOY_SECRETS.
HOOK_TOKEN = "T0ken-s3cret"  # http://deploy:T0ken-s3cret@... in a hook
OPCACHE_TOKEN = "0pc-T0ken-77"
CONSUMERS_TOKEN = "C0nsumer-T0ken-88"
MY_TOKEN = "xoxb-MyT0ken-4242"  # DEPLOY_SECRETS=MY_TOKEN
TOKENS = (HOOK_TOKEN, OPCACHE_TOKEN, CONSUMERS_TOKEN, MY_TOKEN)
HOOK = f"curl -fsS http://deploy:{HOOK_TOKEN}@127.0.0.1:9/hook"  # port 9: refused


def leaked(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [t for t in TOKENS if t in result.stdout + result.stderr]


def files_with_tokens(host) -> str:
    """Files under the deploy path on the host holding any of the tokens."""
    found = host.sh("grep -rlF " + " ".join(f"-e {t}" for t in TOKENS) + " /srv/shop || true")
    return found.stdout.strip()


def test_credentials_in_any_settings_url_are_masked_in_every_output_and_record(rig1) -> None:
    shop = Shop(rig1)
    web1 = rig1.host("web1")
    commands = {"opcache": "command",
                "opcache_command": f"true https://ops:{OPCACHE_TOKEN}@127.0.0.1:9/flush",
                "consumers_command": f"true https://{CONSUMERS_TOKEN}@127.0.0.1:9/q"}

    config = shop.fab("config", hook_after_switch=HOOK, **commands)
    assert config.returncode == 0, config.stdout + config.stderr
    assert leaked(config) == []
    assert "'curl -fsS http://deploy:***@127.0.0.1:9/hook'" in config.stdout
    assert "'true https://ops:***@127.0.0.1:9/flush'" in config.stdout
    assert "'true https://***@127.0.0.1:9/q'" in config.stdout

    dry = shop.fab("deploy", "--dry", hook_after_switch=HOOK, **commands)
    assert dry.returncode == 0 and leaked(dry) == [], dry.stdout + dry.stderr

    ok = shop.fab("deploy", "--json", **commands)  # the summary names both commands
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert leaked(ok) == []
    summary = json.loads(ok.stdout.strip().splitlines()[-1])
    assert "OPcache flushed by command: true https://ops:***@127.0.0.1:9/flush" in " ".join(
        summary["notes"])

    shop.commit(label="v2")
    after = shop.fab("deploy", hook_after_switch=HOOK, **commands)
    assert after.returncode == 1, after.stdout + after.stderr
    assert "THE RELEASE IS LIVE, BUT" in after.stderr
    assert "hook after_switch failed" in after.stderr
    assert "curl -fsS http://deploy:***@127.0.0.1:9/hook" in after.stderr
    assert leaked(after) == []

    shop.commit(label="v3")
    before = shop.fab("deploy", hook_before_switch=HOOK, **commands)  # recorded as failed
    assert before.returncode == 1 and "hook before_switch failed" in before.stderr
    assert leaked(before) == []
    notes = [json.loads(p.read_text())["note"]
             for p in web1.inside("/srv/shop/history").glob("*.json")]
    assert any("http://deploy:***@127.0.0.1:9/hook" in note for note in notes), notes
    assert files_with_tokens(web1) == ""


def test_values_of_the_variables_named_in_deploy_secrets_are_masked(rig1) -> None:
    """A CI secret in the environment, used by a hook of the project's .env (python-dotenv
    puts ``${MY_TOKEN}`` in the command): masked in the command and in its output."""
    shop = Shop(rig1)
    web1 = rig1.host("web1")
    (rig1.base / ".env").write_text(
        'DEPLOY_HOOK_BEFORE_SWITCH="echo ${MY_TOKEN}; exit 1"\n'
        'DEPLOY_HOOK_AFTER_SWITCH="echo ${MY_TOKEN}; exit 1"\n')
    secrets = {"MY_TOKEN": MY_TOKEN, "DEPLOY_SECRETS": "MY_TOKEN",
               "DEPLOY_CONSUMERS_COMMAND": f"true --token={MY_TOKEN}"}

    config = shop.fab("config", **secrets)
    assert config.returncode == 0 and leaked(config) == [], config.stdout + config.stderr
    assert "'echo ***; exit 1'" in config.stdout and "'true --token=***'" in config.stdout
    dry = shop.fab("deploy", "--dry", **secrets)
    assert dry.returncode == 0 and leaked(dry) == [], dry.stdout + dry.stderr

    before = shop.fab("deploy", **secrets)  # the first deploy: nothing switched, recorded
    assert before.returncode == 1 and "hook before_switch failed" in before.stderr
    assert "command: cd /srv/shop/releases/" in before.stderr and "echo ***; exit 1" in (
        before.stderr)
    assert "| ***" in before.stderr, "the hook's output, masked"
    assert leaked(before) == []

    (rig1.base / ".env").write_text('DEPLOY_HOOK_AFTER_SWITCH="echo ${MY_TOKEN}; exit 1"\n')
    after = shop.fab("deploy", **secrets)
    assert after.returncode == 1 and "hook after_switch failed" in after.stderr
    assert "THE RELEASE IS LIVE, BUT" in after.stderr and "| ***" in after.stderr
    assert leaked(after) == []
    assert files_with_tokens(web1) == ""
    notes = [json.loads(p.read_text())["note"]
             for p in web1.inside("/srv/shop/history").glob("*.json")]
    assert any("echo ***; exit 1" in note for note in notes), notes

    unmasked = shop.fab("config", DEPLOY_SECRETS="MY_TOKEN MY_TOKN", MY_TOKEN=MY_TOKEN)
    assert unmasked.returncode == 0 and leaked(unmasked) == []
    assert "WARNING: DEPLOY_SECRETS: MY_TOKN is set neither in the environment" in (
        unmasked.stdout)


@pytest.mark.parametrize("value", ["MY-TOKEN", MY_TOKEN, "MY_TOKEN=abc", "1TOKEN"])
def test_deploy_secrets_takes_names_only(value: str, tmp_path) -> None:
    """A value where a name belongs (``DEPLOY_SECRETS=$MY_TOKEN``) is refused with exit 2
    naming the setting, and is not printed: it may be the secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_")}
    env |= {"DEPLOY_PATH": "/srv/shop", "DEPLOY_HOSTS": "local", "DEPLOY_REPO": "/nowhere",
            "DEPLOY_SECRETS": f"OTHER_TOKEN {value}"}
    for task in (["config"], ["deploy", "--dry"], ["deploy"]):
        result = subprocess.run([FAB, "-r", str(ROOT), *task], cwd=tmp_path, env=env,
                                text=True, capture_output=True, timeout=120)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "configuration error: DEPLOY_SECRETS: entry 2 of 2 is not a variable name" in (
            result.stderr)
        assert value not in result.stdout + result.stderr


def test_urls_in_any_setting_and_named_variables_are_registered_in_every_form(
        tmp_path) -> None:
    """What loading the settings registers (no host needed): every URL's credentials in
    any value, URL-encoded forms, JSON and shell quoting, a variable set in .env only;
    never a user name (ssh://git@, user:password's user), a $VARIABLE or a short value."""
    from urllib.parse import quote

    from fabric_magento_deploy import settings
    from fabric_magento_deploy.redact import redact

    (tmp_path / ".env").write_text("IN_DOTENV='dotenv-S3cret value'\n")
    env = {"DEPLOY_PATH": "/srv/shop", "DEPLOY_REPO": "ssh://git@git.example/shop.git",
           "DEPLOY_HEALTH_PATHS": "none", "DEPLOY_OPCACHE": "url",
           "DEPLOY_OPCACHE_URL": "https://ops:p%40ss-w0rd@shop.example/",
           "DEPLOY_HOOK_AFTER_DEPLOY": "curl -u x 'https://ci:ci-T0k%2Fen@ci.example/hook'"
                                       " https://builder:$BUILD_TOKEN@ci.example/",
           "DEPLOY_CONSUMERS_COMMAND": "notify https://ab-T0ken-only@hooks.example/x",
           "DEPLOY_SECRETS": "UNICODE_TOKEN,IN_DOTENV SHORT",
           "UNICODE_TOKEN": 'tök"en\'with/quotes', "SHORT": "abc"}
    loaded = settings.load(environ=env, cwd=tmp_path)
    assert loaded.secrets == ("UNICODE_TOKEN", "IN_DOTENV", "SHORT")
    for text in ("p@ss-w0rd", "p%40ss-w0rd", "ci-T0k%2Fen", "ci-T0k/en", "ci-T0k%2fen",
                 "ab-T0ken-only", base64.b64encode(b"ab-T0ken-only:").decode(),
                 "dotenv-S3cret value", "dotenv-S3cret+value", "dotenv-S3cret%20value",
                 'tök"en\'with/quotes', json.dumps('tök"en\'with/quotes')[1:-1],
                 quote('tök"en\'with/quotes', safe="")):
        assert redact(f"<{text}>") == "<***>", text
    assert redact(shlex.quote('tök"en\'with/quotes')) == "'***'"
    for kept in ("git@git.example", "ops:", "ci:", "$BUILD_TOKEN", "abc", "builder"):
        assert kept in redact("ssh://git@git.example ops: ci: $BUILD_TOKEN abc builder")
    with pytest.raises(settings.SettingsError) as refused:
        settings.load(environ={**env, "DEPLOY_OPCACHE_URL": "ftp://u:ftp-T0ken-9@h/"},
                      cwd=tmp_path)
    assert "DEPLOY_OPCACHE_URL='ftp://u:***@h/'" in str(refused.value)
    with pytest.raises(settings.SettingsError) as refused:
        settings.load(environ={**env, "DEPLOY_HEALTH_BASE_URL": "https://10.0.0.5 "
                               "web2=https://ab-Other-T0ken@10.0.0.6"}, cwd=tmp_path)
    assert "'https://***@10.0.0.6'" in str(refused.value)
