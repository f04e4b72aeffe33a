"""Measured, not asserted: build on each host vs. build once and ship (DEPLOY_BUILD=local).

    sudo .venv/bin/python benchmarks/bench_build_once.py [HOSTS ...]   (default: 1 3 8)

For each host count, on a fresh rig: the fake shop plus BULK_FILES files of code (so a
release weighs what a small shop's does), a first deploy in each mode, then a code-only
commit deployed in each mode. The build's CPU time is stood in for by a
``before_static_content`` hook sleeping BUILD_SECONDS, run where the build runs (on
each host, or once on the builder). Prints, per host count: wall time of the code-only
deploy in each mode, and the bytes rsync sent per host against the size of a release.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from rig import make_rig  # noqa: E402
from scenario import Shop  # noqa: E402

BUILD_SECONDS = 2.0
BULK_FILES = 2000
BULK_BYTES = 8192


def bulk() -> dict[str, str]:
    """Code that does not change between releases (random, so it does not compress)."""
    return {f"lib/internal/Bulk/File{i:05d}.php":
            "<?php // " + os.urandom(BULK_BYTES // 2).hex() + "\n" for i in range(BULK_FILES)}


def release_size(shop: Shop, release: str) -> int:
    out = shop.rig.host("web1").sh(f"du -sb --apparent-size /srv/shop/releases/{release}",
                                   user="deployer").stdout
    return int(out.split()[0])


def measure(hosts: int) -> str:
    rig = make_rig(hosts)
    try:
        shop = Shop(rig)
        shop.commit(files=bulk())
        modes = {"each": {}, "local": {"build": "local", "build_dir": str(rig.base / "builder")}}
        hook = {"hook_before_static_content": f"sleep {BUILD_SECONDS}"}
        for settings in modes.values():  # first deploys: mirrors, caches, a live release
            shop.deploy(**settings, **hook)
        wall, sent = {}, {}
        for mode, settings in modes.items():
            shop.commit(label=f"{mode}-2")
            start = time.perf_counter()
            summary = shop.deploy(**settings, **hook)
            wall[mode] = time.perf_counter() - start
            sent[mode] = summary.sent_bytes
        size = release_size(shop, summary.release)
        per_host = max(sent["local"].values())
        return (f"{hosts} host(s): code-only deploy {wall['each']:.2f} s building on each host, "
                f"{wall['local']:.2f} s built once + shipped (ratio "
                f"{wall['each'] / wall['local']:.2f}x); sent per host {per_host / 1e6:.2f} MB "
                f"of a {size / 1e6:.1f} MB release ({100 * per_host / size:.1f}%), "
                f"{sum(sent['local'].values()) / 1e6:.2f} MB in all")
    finally:
        rig.stop()


def main() -> None:
    counts = [int(a) for a in sys.argv[1:]] or [1, 3, 8]
    for n in counts:
        print(measure(n), flush=True)


if __name__ == "__main__":
    main()
