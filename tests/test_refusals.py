"""Refusals that protect the operator from an easy mistake: deploying as root, and a demo
sandbox that is somebody's directory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from scenario import FAB, ROOT


def fab(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_")}
    return subprocess.run([FAB, "-r", str(ROOT), *args], cwd=cwd, env={**base, **env},
                          text=True, capture_output=True, timeout=120)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs to run as root to be refused as root")
def test_a_deploy_as_root_is_refused_before_anything_changes(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = fab("deploy", cwd=tmp_path, DEPLOY_PATH=str(site), DEPLOY_HOSTS="local",
                 DEPLOY_REPO=str(tmp_path / "repo"), DEPLOY_OPCACHE="none")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[local] the deploy would run as root" in result.stderr
    assert "DEPLOY_ALLOW_ROOT=1" in result.stderr
    assert not (site / "releases").exists() and not (site / "deploy.lock").exists()


def test_the_demo_never_deletes_a_directory_it_did_not_make(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "fabfile.py").write_text("# the user's own work\n")
    refused = fab("demo", f"--sandbox={project}", cwd=tmp_path)
    assert refused.returncode == 2 and "is not a demo sandbox" in refused.stderr
    assert (project / "fabfile.py").read_text() == "# the user's own work\n"
    assert sorted(p.name for p in project.iterdir()) == ["fabfile.py"]
