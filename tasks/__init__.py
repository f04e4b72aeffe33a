"""Zero-downtime Magento 2 deploys with Fabric.

Use the tasks from your own fabfile::

    from tasks import ns            # every task, as a collection
    # or pick some:  from tasks import deploy, rollback, flush_opcache

or call the plain functions with your own connections::

    from fabric import Connection
    from tasks import Host, deploy_to, load_settings
    deploy_to([Host.from_context(Connection("web1"))], load_settings())
"""

from invoke import Collection

from .cli import (
    build_release,
    db_status,
    deploy,
    flush_opcache,
    maintenance_off,
    maintenance_on,
    maybe_upgrade,
    prepare_release,
    prune_releases,
    releases,
    rollback,
    switch_symlink,
    unlock,
)
from .deploy import DeployError
from .deploy import deploy as deploy_to
from .hosts import Host, StepFailed
from .settings import Settings, SettingsError
from .settings import load as load_settings

ns = Collection(
    deploy, prepare_release, build_release, db_status, maybe_upgrade, switch_symlink,
    flush_opcache, maintenance_on, maintenance_off, prune_releases, releases, rollback, unlock,
)

__all__ = [
    "ns", "deploy", "prepare_release", "build_release", "db_status", "maybe_upgrade",
    "switch_symlink", "flush_opcache", "maintenance_on", "maintenance_off", "prune_releases",
    "unlock", "releases", "rollback", "deploy_to", "DeployError", "Host", "StepFailed",
    "Settings", "SettingsError",
    "load_settings",
]
