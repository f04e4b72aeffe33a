"""Measured, not asserted: how a code-only deploy scales from 1 host to 8.

    sudo .venv/bin/python benchmarks/bench_scale.py [RUNS]   (default 5)

One rig of 8 hosts (real sshd each), health check off, OPcache strategy ``none``. Each
run makes a commit and deploys it to web1 alone, then another commit to all 8 hosts.
Prints, as medians over RUNS (the machine may be busy; the minimum is printed too):

* wall(8 hosts) / wall(1 host);
* the switch skew at 8 hosts, two ways: the spread of the moments the hosts' ``current``
  symlinks were replaced (their ctime, read on the hosts' own filesystems: the switch as
  the web servers see it), and the spread of the moments the deploy saw each switch
  command return (``Summary.switch_spread``).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from rig import make_rig  # noqa: E402
from scenario import Shop  # noqa: E402

HOSTS = 8


def switched_at(shop: Shop) -> list[int]:
    """When each host's ``current`` was last replaced (ns; a rename sets the link's ctime)."""
    return [os.lstat(host.inside("/srv/shop/current")).st_ctime_ns for host in shop.rig.hosts]


def timed_deploy(shop: Shop, label: str, hosts: list[str] | None = None
                 ) -> tuple[float, float, float]:
    """(wall s, host-side skew ms, client-side skew ms) of one code-only deploy to
    ``hosts`` (default: every host)."""
    shop.commit(label=label)
    only = {"DEPLOY_HOSTS": ",".join(hosts)} if hosts else {}
    start = time.perf_counter()
    summary = shop.deploy(hosts=hosts, **only)
    wall = time.perf_counter() - start
    stamps = [0] if hosts else switched_at(shop)
    return wall, (max(stamps) - min(stamps)) / 1e6, summary.switch_spread * 1000


def line(name: str, values: list[float], unit: str) -> str:
    return (f"{name}: {statistics.median(values):.2f} {unit} (median; min {min(values):.2f}, "
            f"max {max(values):.2f})")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    rig = make_rig(HOSTS)
    try:
        shop = Shop(rig)
        shop.deploy()  # mirrors cloned, shared dirs made on every host
        one, many, skew, spread = [], [], [], []
        for i in range(runs):
            one.append(timed_deploy(shop, f"a{i}", ["web1"])[0])
            wall, host_skew, client_skew = timed_deploy(shop, f"b{i}")
            many.append(wall)
            skew.append(host_skew)
            spread.append(client_skew)
        ratios = [m / o for m, o in zip(many, one, strict=True)]
        print(f"code-only deploys, health check off, {runs} runs each:")
        print(line("wall, 1 host", one, "s"))
        print(line(f"wall, {HOSTS} hosts", many, "s"))
        print(line(f"wall({HOSTS})/wall(1)", ratios, "x"))
        print(line(f"switch skew at {HOSTS} hosts, current replaced on the hosts", skew, "ms"))
        print(line(f"switch skew at {HOSTS} hosts, switch commands returned", spread, "ms"))
    finally:
        rig.stop()


if __name__ == "__main__":
    main()
