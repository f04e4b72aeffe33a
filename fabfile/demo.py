"""``fab demo``: two real deploys of a bundled sample shop into a local sandbox.

Needs only Python and git. The sample shop's ``bin/magento`` and Composer are shell
stand-ins (see ``sample_shop/bin``), so the demo runs where PHP is not installed; the
deploy itself -- release folders, mirror, shared links, database check, maintenance
window, atomic switch, records, pruning -- is the real code path.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from fabric import task
from invoke import Context
from invoke.exceptions import Exit

from fabric_magento_deploy.deploy import deploy as deploy_to
from fabric_magento_deploy.hosts import Host, say
from fabric_magento_deploy.settings import load

SAMPLE = Path(__file__).parent / "sample_shop"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


MARKER = ".fabric-magento-demo"


def make_sandbox(root: Path) -> dict[str, str]:
    """A git repo of the sample shop, an installed 'database', and the deploy settings.

    An earlier demo's sandbox (it has :data:`MARKER`) or an empty directory is reused;
    anything else is refused: ``--sandbox=.`` must never delete someone's project.
    """
    if root.exists() and (root / MARKER).is_file():
        shutil.rmtree(root)
    elif root.exists() and any(root.iterdir()):
        raise Exit(f"refusing --sandbox={root}: it exists, is not empty and is not a demo "
                   "sandbox; give a new directory", code=2)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("made by fab demo; deleted and remade by the next one\n")
    repo, site = root / "shop-repo", root / "site"
    shutil.copytree(SAMPLE, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.name=demo", "-c", "user.email=demo@example.invalid", "add", "-A")
    git(repo, "-c", "user.name=demo", "-c", "user.email=demo@example.invalid",
        "commit", "-qm", "first release")
    db = root / "database.txt"
    db.write_text("1.0.0\n")  # the shop is "installed" at schema 1.0.0
    env_php = site / "shared" / "app" / "etc" / "env.php"
    env_php.parent.mkdir(parents=True)
    env_php.write_text(f"<?php\nreturn ['db' => ['connection' => ['default' => "
                       f"['dbname' => '{db}']]]];\n")
    return {
        "DEPLOY_PATH": str(site), "DEPLOY_REPO": str(repo), "DEPLOY_HOSTS": "local",
        "DEPLOY_PHP": "sh", "DEPLOY_COMPOSER": "sh bin/composer-standin",
        "DEPLOY_OPCACHE": "none", "DEPLOY_KEEP_RELEASES": "3",
        "DEPLOY_HEALTH_PATHS": "none", "DEPLOY_VERIFY_PATH": "none",  # no web server, no FPM
        "DEPLOY_ALLOW_ROOT": "1",  # a sandbox of the caller's own: root or not, it is theirs
    }


def commit(repo: Path, path: str, text: str, message: str) -> None:
    (repo / path).write_text(text)
    git(repo, "-c", "user.name=demo", "-c", "user.email=demo@example.invalid",
        "commit", "-qam", message)


@task(help={"sandbox": "directory for the demo (default: ./.demo, recreated)"})
def demo(c: Context, sandbox: str = ".demo") -> None:
    """Deploy a bundled sample shop twice into a local sandbox: code-only, then schema change.

    Shows both paths of a deploy: a code-only release switches with zero downtime; a
    release with a schema change gets a maintenance window as long as setup:upgrade.
    Uses shell stand-ins for PHP and Composer, so it needs only Python and git.
    """
    root = Path(sandbox).resolve()
    env = make_sandbox(root)
    settings = load(environ=env, cwd=root)
    repo = Path(env["DEPLOY_REPO"])
    say(f"demo sandbox: {root}\nNOTE: bin/magento and composer are shell stand-ins here; "
        "the deploy steps around them are the real ones.\n")

    commit(repo, "app/code/Demo/Shop/Label.php",
           "<?php\nreturn 'Demo shop, new product page';\n", "code-only change")
    say("== deploy 1: a code-only change ==")
    first = deploy_to([Host.named("local", c.config, echo=False)], settings)
    say("\n" + first.text() + "\n")

    commit(repo, "app/code/Demo/Shop/schema.version", "1.1.0\n", "schema change")
    say("== deploy 2: a schema change (module version 1.0.0 -> 1.1.0) ==")
    second = deploy_to([Host.named("local", c.config, echo=False)], settings)
    say("\n" + second.text() + "\n")
    say(f"live now: {(root / 'site' / 'current').resolve()}\n"
        f"releases: {', '.join(sorted(p.name for p in (root / 'site' / 'releases').iterdir()))}")
