"""One repository, two stages: `.env.<stage>` over `.env`, both found next to the
fabfile even when `fab` runs from a subdirectory; `fab config` says where each value
came from."""

from __future__ import annotations

import subprocess

import pytest
from scenario import FAB, Shop

pytestmark = [pytest.mark.real_hosts, pytest.mark.slow]


def test_staging_and_production_from_one_checkout(rig3) -> None:
    shop = Shop(rig3)
    project = rig3.base / "shop-project"
    (project / "app" / "code").mkdir(parents=True)
    (project / "fabfile.py").write_text("from fabric_magento_deploy import ns\n")
    (project / ".env").write_text("DEPLOY_KEEP_RELEASES=2\nDEPLOY_HOSTS=nowhere\n")
    (project / ".env.staging").write_text("DEPLOY_HOSTS=web1\n")
    (project / ".env.production").write_text("DEPLOY_HOSTS=web2,web3\nDEPLOY_PRIMARY=web3\n")
    env = shop.env(DEPLOY_HOSTS=None)

    def fab(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([FAB, "-S", str(rig3.ssh_config), *args],
                              cwd=project / "app" / "code", env={**env, **extra},
                              text=True, capture_output=True, timeout=300)

    staging = fab("stage", "staging", "deploy", "--quiet")
    assert staging.returncode == 0, staging.stdout + staging.stderr
    web1, web2, web3 = rig3.hosts
    assert shop.live(web1) is not None and shop.live(web2) is None and shop.live(web3) is None

    production = fab("deploy", "--quiet", DEPLOY_STAGE="production")
    assert production.returncode == 0, production.stdout + production.stderr
    assert shop.live(web2) == shop.live(web3) != shop.live(web1)
    assert [h.name for h in rig3.hosts if "setup:db:status" in shop.commands(h)] == [
        "web1", "web3"], "production's primary is web3"

    shown = fab("stage", "production", "config")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    lines = {line.split()[0]: line for line in shown.stdout.splitlines() if line.strip()}
    assert lines["DEPLOY_HOSTS"].endswith(str(project / ".env.production"))
    assert lines["DEPLOY_KEEP_RELEASES"].endswith(str(project / ".env"))
    assert lines["DEPLOY_PATH"].endswith("environment")
    assert lines["DEPLOY_BRANCH"].endswith("default")

    unknown = fab("stage", "prod", "deploy")
    assert unknown.returncode == 2 and "no file .env.prod" in unknown.stderr


def test_config_masks_credentials(rig1, tmp_path) -> None:
    shop = Shop(rig1)
    (tmp_path / "fabfile.py").write_text("from fabric_magento_deploy import ns\n")
    result = subprocess.run([FAB, "-S", str(rig1.ssh_config), "config"], cwd=tmp_path,
                            env=shop.env(repo="https://ci:s3cr3t-t0ken@git.example/shop.git"),
                            text=True, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "s3cr3t-t0ken" not in result.stdout and "https://ci:***@git.example" in result.stdout
