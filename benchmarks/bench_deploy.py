"""Measured, not asserted: what the design choices buy, in one run on a real 3-host rig.

    sudo .venv/bin/python benchmarks/bench_deploy.py

Prints, each measured in this run:
1. per-command latency on an open SSH connection, with and without TCP_NODELAY;
2. a 3-host deploy whose build takes ~BUILD_SECONDS per host: wall time of the build
   phase vs. the sum of the hosts' build times (parallel vs. what serial would cost);
3. the switch spread across hosts;
4. creating a release from the host's bare mirror (git archive) vs. a fresh clone.
"""

from __future__ import annotations

import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from rig import make_rig  # noqa: E402
from scenario import Shop  # noqa: E402

from fabric_magento_deploy.hosts import Host  # noqa: E402

BUILD_SECONDS = 1.5
COMMANDS = 40


def latency(shop: Shop, nodelay: bool) -> float:
    conn = shop.rig.connection("web1")
    host = Host("web1", conn, echo=False)
    conn.open()
    conn.transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))
    times = []
    for _ in range(COMMANDS):
        start = time.perf_counter()
        host.run("true", echo=False)
        times.append(time.perf_counter() - start)
    conn.close()
    return statistics.median(times) * 1000


def release_creation(shop: Shop) -> tuple[float, float]:
    web1 = shop.rig.host("web1")
    archive = ("git -C /srv/shop/repo.git archive --format=tar HEAD | "
               "tar -x -C /srv/shop/bench-archive")
    clone = f"git clone -q {shop.repo} /srv/shop/bench-clone"
    timings = []
    for cmd, target in ((archive, "bench-archive"), (clone, "bench-clone")):
        web1.sh(f"rm -rf /srv/shop/{target} && mkdir -p /srv/shop/{target}", user="deployer")
        start = time.perf_counter()
        web1.sh(cmd, user="deployer")
        timings.append(time.perf_counter() - start)
    return timings[0], timings[1]


def main() -> None:
    rig = make_rig(3)
    try:
        shop = Shop(rig)
        for host in rig.hosts:
            shop.faults(host, {"setup:di:compile": {"sleep": BUILD_SECONDS}})
        shop.deploy()  # first deploy: mirrors cloned, shared dirs created
        shop.commit(label="v2")
        summary = shop.deploy()
        builds = summary.build_seconds
        build_phase = max(builds.values())
        with_delay, without = latency(shop, False), latency(shop, True)
        archive, clone = release_creation(shop)
        print(f"per-command latency, median of {COMMANDS}: {with_delay:.1f} ms without "
              f"TCP_NODELAY, {without:.1f} ms with it (ratio {with_delay / without:.1f}x)")
        print(f"build phase on 3 hosts: {build_phase:.2f} s in parallel vs "
              f"{sum(builds.values()):.2f} s summed (serial would take "
              f"{sum(builds.values()) / build_phase:.2f}x as long)")
        print(f"switch spread across 3 hosts: {summary.switch_spread * 1000:.0f} ms")
        print(f"new release from the bare mirror (git archive): {archive * 1000:.0f} ms vs "
              f"full clone: {clone * 1000:.0f} ms (ratio {clone / archive:.1f}x)")
    finally:
        rig.stop()


if __name__ == "__main__":
    main()
