"""Zero-downtime Magento 2 deploys with Fabric.

Use the tasks from your own fabfile::

    from fabric_magento_deploy import ns            # every task, as a collection
    # or pick some:  from fabric_magento_deploy import deploy, rollback, flush_opcache

A task called from your own task acts at once: ``deploy(c)`` deploys to ``c``'s host, a
fabric ``Group``'s hosts, or ``DEPLOY_HOSTS`` for a plain Context. Or call the functions
with your own connections::

    from fabric import Connection
    from fabric_magento_deploy import Host, deploy_to, load_settings
    deploy_to([Host.from_context(Connection("web1"))], load_settings())

Every error a caller may want to catch is exported here (see ``__all__``).
"""

from invoke import Collection

from . import init as _discovery  # noqa: F401  (first: the task below takes the name `init`)
from .cli import (
    build_release,
    config,
    db_status,
    deploy,
    flush_opcache,
    init,
    magento_command,
    maintenance_off,
    maintenance_on,
    maybe_upgrade,
    prepare_release,
    prune_releases,
    releases,
    rollback,
    stage,
    switch_symlink,
    unlock,
)
from .cron import cron_install, cron_resume
from .deploy import DeployError, OutcomeUnknown
from .deploy import deploy as deploy_to
from .doctor import doctor
from .gitignore import check_gitignore
from .hooks import HookContext, HookFailed, hook
from .hostkeys import HostKeyRefused
from .hosts import DuplicateHost, Host, StepFailed
from .lock import LockHeld
from .magento import DatabaseAheadError, MagentoError
from .opcache import OpcacheError
from .report import Summary
from .rollback import RollbackRefused
from .rollback import rollback as rollback_to
from .settings import Settings, SettingsError
from .settings import load as load_settings

ns = Collection(
    deploy, prepare_release, build_release, db_status, maybe_upgrade, switch_symlink,
    flush_opcache, maintenance_on, maintenance_off, prune_releases, releases, rollback, unlock,
    stage, config, magento_command, check_gitignore, doctor, cron_install, cron_resume, init,
)

__all__ = [
    # tasks
    "ns", "deploy", "prepare_release", "build_release", "db_status", "maybe_upgrade",
    "switch_symlink", "flush_opcache", "maintenance_on", "maintenance_off", "prune_releases",
    "unlock", "releases", "rollback", "stage", "config", "magento_command", "check_gitignore",
    "doctor", "cron_install", "cron_resume", "init",
    # functions and what they take and give
    "deploy_to", "rollback_to", "load_settings", "Settings", "Host", "Summary", "hook",
    "HookContext",
    # errors a caller may catch
    "SettingsError", "DuplicateHost", "DeployError", "OutcomeUnknown", "StepFailed",
    "RollbackRefused", "LockHeld", "MagentoError", "DatabaseAheadError", "OpcacheError",
    "HookFailed", "HostKeyRefused",
]
