"""Deploys without SSH: ``fab demo`` and the host named ``local`` (``DEPLOY_HOSTS=local``)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
from scenario import FAB, ROOT, Shop

pytestmark = pytest.mark.slow


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the developer's own DEPLOY_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_")}
    return {**env, **extra}


def test_fab_demo_deploys_twice_into_a_sandbox_and_prints_both_summaries(tmp_path: Path) -> None:
    result = subprocess.run([FAB, "-r", str(ROOT), "demo"], cwd=tmp_path, env=clean_env(),
                            text=True, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "== deploy 1: a code-only change ==" in out
    assert "path: zero-downtime (no database or config change)" in out
    assert "== deploy 2: a schema change" in out
    assert "path: maintenance window" in out
    assert out.count(" is live on local") == 2, out
    site = tmp_path / ".demo" / "site"
    releases = sorted(p.name for p in (site / "releases").iterdir())
    assert len(releases) == 2
    records = {r: json.loads((site / "history" / f"{r}.json").read_text()) for r in releases}
    first, second = sorted(releases, key=lambda r: records[r]["started"] + r)
    assert (site / "current").is_symlink()
    assert (site / "current").resolve() == site / "releases" / second
    assert (records[first]["setup_upgrade"], records[second]["setup_upgrade"]) == (False, True)
    assert records[second]["status"] == "live" and records[first]["status"] == "previous"
    assert not (site / "deploy.lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".demo"], "demo wrote outside .demo"


@pytest.mark.real_hosts
def test_whole_deploy_to_the_host_named_local_runs_without_ssh(rig1) -> None:
    """``DEPLOY_HOSTS=local`` on a web host itself: ``fab`` runs inside web1's namespace
    with no ssh_config and no host to reach, so nothing could go over SSH. It runs as
    root there: the deploy user cannot execute this venv's interpreter (under /root)."""
    one = Shop(rig1)
    web1 = rig1.host("web1")
    env = {"DEPLOY_PATH": "/srv/shop", "DEPLOY_HOSTS": "local", "DEPLOY_REPO": str(one.repo),
           "DEPLOY_OPCACHE": "none", "DEPLOY_ALLOW_ROOT": "1",  # root on purpose, see above
           "DEPLOY_HEALTH_PATHS": "none"}  # sshd only: no web server to ask
    settings = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())

    def fab(*args: str) -> subprocess.CompletedProcess[str]:
        argv = " ".join(shlex.quote(a) for a in (FAB, "-r", str(ROOT), *args))
        return web1.sh(f"cd /srv/log && env {settings} {argv}", check=False, timeout=300)

    first = fab("deploy", "--quiet")
    assert first.returncode == 0, first.stdout + first.stderr
    rel = one.live(web1)
    assert rel is not None and f"deploy: release {rel}" in first.stdout
    assert "is live on local" in first.stdout
    one.commit(label="v2", modules={"Shop_Catalog": "1.1.0"})
    second = fab("deploy", "--quiet")
    assert second.returncode == 0, second.stdout + second.stderr
    new = one.live(web1)
    assert new not in (None, rel) and "path: maintenance window" in second.stdout
    assert one.releases(web1) == sorted([rel, new])
    log = one.log(web1)
    assert {e["user"] for e in log} == {"root"}, "bin/magento ran as someone else (SSH?)"
    upgrades = [e for e in log if e["cmd"] == "setup:upgrade"]
    assert len(upgrades) == 1 and upgrades[0]["bp"] == f"/srv/shop/releases/{new}"
    assert not one.release_path(web1, rel, "var/.maintenance.flag").exists()
    assert not one.lock_exists(web1)
    listing = fab("releases")
    assert listing.returncode == 0 and "releases on local:" in listing.stdout, listing.stdout
