"""Measured, not asserted: what visitors get during deploys on Magento's stock nginx rules.

    sudo .venv/bin/python benchmarks/bench_customers.py

On a real 3-host rig (nginx with ``nginx.conf.sample``'s static rules, php-fpm with
OPcache), under continuous HTTP load that fetches each page and the stylesheet it links,
prints for each deploy: pages served, failed pages, stylesheets fetched, broken ones, and
for a schema release the maintenance window each host showed against ``setup:upgrade``.

The first deploy uses the content version this project used before (the release id with
its dots, ``20261201.100055.601``) to show what the digits-only version fixes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from load import HttpLoad  # noqa: E402
from rig import make_rig  # noqa: E402
from scenario import Shop  # noqa: E402

from fabric_magento_deploy import build  # noqa: E402


def deploy_under_load(rig, action) -> tuple[HttpLoad, object]:
    with HttpLoad.on_rig(rig) as load:
        load.wait_ok()
        result = action()
        load.wait_after(time.time(), count=20)
    return load, result


def report(title: str, load: HttpLoad, rig, label: str) -> None:
    """Counts for the pages of the new release ``label`` (the old one's are its own)."""
    pages = [s for s in load.samples if s.label == label]
    assets = [s for h in rig.hosts for s in load.assets(h.name) if s.label == label]
    broken = [s for s in assets if s.kind != "ok"]
    print(f"{title}: {len(load.samples)} pages in all, {len(load.failed())} failed; "
          f"pages of the new release {len(pages)}, their stylesheets {len(assets)}, "
          f"{len(broken)} broken")


def main() -> None:
    rig = make_rig(3)
    try:
        rig.start_web()
        shop = Shop(rig, label="A")
        shop.deploy(opcache="fcgi")
        shop.commit(label="B")
        with mock.patch.object(build, "static_version", lambda rel: rel):
            load, _ = deploy_under_load(rig, lambda: shop.deploy(opcache="fcgi"))
        report("code-only, 3 hosts, dotted version (before)", load, rig, "B")
        shop.commit(label="C")
        load, _ = deploy_under_load(rig, lambda: shop.deploy(opcache="fcgi"))
        report("code-only, 3 hosts, digits-only version", load, rig, "C")
        shop.commit(label="D", modules={"Shop_Catalog": "1.1.0"})
        shop.faults(rig.host("web1"), {"setup:upgrade": {"sleep": 2.0}})
        load, summary = deploy_under_load(rig, lambda: shop.deploy(opcache="fcgi"))
        report("schema release, 3 hosts, digits-only version", load, rig, "D")
        for host in rig.hosts:
            window = load.window("maintenance", host=host.name)
            seen = window[1] - window[0] if window else 0.0
            print(f"  {host.name}: maintenance seen {seen:.2f} s; tool's window "
                  f"{summary.maintenance_seconds:.2f} s; setup:upgrade "
                  f"{summary.upgrade_seconds:.2f} s")
    finally:
        rig.stop()


if __name__ == "__main__":
    main()
