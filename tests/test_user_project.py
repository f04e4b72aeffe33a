"""A new user's path, as the README tells it: an existing repository that already has its
own ``tasks.py`` (Invoke) and ``fabfile.py`` installs the library from a wheel, writes a
short ``ship`` task with a hook around ``deploy``, and ships to staging and production
from one checkout with two ``.env`` files. A wrapped deploy that fails exits non-zero."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from scenario import ROOT, Shop

pytestmark = [pytest.mark.real_hosts, pytest.mark.slow]

BIN = Path(sys.executable).parent
HOOK_LOG = "/srv/log/user-hooks.log"

TASKS_PY = '''\
from invoke import task


@task
def lint(c):
    """The project's own Invoke task, older than the deploy tool."""
    print("lint: ok")
'''

FABFILE = f'''\
from fabric import task
from fabric_magento_deploy import deploy, hook, stage  # noqa: F401  (fab stage <name> ...)
from tasks import lint


@hook("before_switch")
def smoke(ctx):
    ctx.run("php bin/magento --version >/dev/null && echo smoke-$(basename $PWD) >> {HOOK_LOG}")


@task
def ship(c):
    """Lint, deploy, tell the team."""
    lint(c)
    deploy(c)
    print("shipped")
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package built as a wheel from a copy of the sources and installed into a
    directory of its own: what ``pip install <wheel or git URL>`` puts on a user's path."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "tasks", source / "tasks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([BIN / "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", work / "dist", source], check=True, capture_output=True)
    (wheel,) = (work / "dist").glob("*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {"tasks", "fabfile"}.isdisjoint(tops), tops
    assert "fabric_magento_deploy/php/opcache_client.php" in zipfile.ZipFile(wheel).namelist()
    site = work / "site"
    subprocess.run([BIN / "pip", "install", "-q", "--no-deps", "--target", site, wheel],
                   check=True, capture_output=True)
    return site


def make_project(shop: Shop, path: Path) -> None:
    """The user's repository: their tasks.py and fabfile.py, a .env for what every stage
    shares and one file per stage."""
    (path / "app" / "code").mkdir(parents=True)
    (path / "tasks.py").write_text(TASKS_PY)
    (path / "fabfile.py").write_text(FABFILE)
    (path / ".env").write_text(textwrap.dedent(f"""\
        DEPLOY_REPO={shop.repo}
        DEPLOY_PATH={shop.rig.deploy_path}
        DEPLOY_OPCACHE=none
        DEPLOY_HEALTH_PATHS=none
        DEPLOY_KEEP_RELEASES=3
        """))
    (path / ".env.staging").write_text(
        f"DEPLOY_HOSTS=web1\nDEPLOY_HOOK_AFTER_SWITCH=echo staging-live >> {HOOK_LOG}\n")
    (path / ".env.production").write_text(
        "DEPLOY_HOSTS=web2,web3\nDEPLOY_PRIMARY=web3\n"
        f"DEPLOY_HOOK_AFTER_SWITCH=primary:echo production-live >> {HOOK_LOG}\n")


def hook_log(shop: Shop, name: str) -> list[str]:
    path = shop.rig.host(name).inside(HOOK_LOG)
    return path.read_text().split() if path.exists() else []


def test_a_user_project_ships_to_two_stages_with_its_own_tasks_py(rig3, installed) -> None:
    shop = Shop(rig3)
    project = rig3.base / "agency-shop"
    make_project(shop, project)
    env = {k: v for k, v in shop.env().items() if not k.startswith("DEPLOY_")}
    env["PYTHONPATH"] = str(installed)

    def run(*argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=project / "app" / "code", env={**env, **extra},
                              text=True, capture_output=True, timeout=300)

    def fab(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return run(str(BIN / "fab"), "-S", str(rig3.ssh_config), *args, **extra)

    where = run(str(BIN / "python"), "-c",
                "import fabric_magento_deploy as m; print(m.__file__)")
    assert where.stdout.startswith(str(installed)), where.stdout + where.stderr

    staging = fab("stage", "staging", "ship")
    assert staging.returncode == 0, staging.stdout + staging.stderr
    out = staging.stdout
    assert out.index("lint: ok") < out.index("is live on") < out.index("shipped")
    web1, web2, web3 = rig3.hosts
    release = shop.live(web1)
    assert release and shop.live(web2) is None and shop.live(web3) is None
    assert hook_log(shop, "web1") == [f"smoke-{release}", "staging-live"]

    production = fab("ship", DEPLOY_STAGE="production")
    assert production.returncode == 0, production.stdout + production.stderr
    live = shop.live(web2)
    assert live and live == shop.live(web3) and shop.live(web1) == release
    assert hook_log(shop, "web2") == [f"smoke-{live}"], "the command hook is primary-only"
    assert hook_log(shop, "web3") == [f"smoke-{live}", "production-live"]

    own = run(str(BIN / "invoke"), "--search-root", str(project), "lint")
    assert own.returncode == 0 and "lint: ok" in own.stdout, own.stdout + own.stderr

    shop.commit(label="v2")
    shop.faults(web3, {"setup:di:compile": {"exit": 1, "message": "boom"}})
    failed = fab("stage", "production", "ship")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "shipped" not in failed.stdout and "[web3] di:compile failed" in failed.stderr
    assert shop.live(web2) == shop.live(web3) == live, "the failed release went nowhere"
