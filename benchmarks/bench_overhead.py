"""Measured, not asserted: the deploy's own time around Composer and Magento.

    sudo .venv/bin/python benchmarks/bench_overhead.py [RUNS]   (default 7)

One host of the rig, code-only releases, OPcache strategy ``none`` (a flush costs the
same with any tool). Per deploy: wall time minus the steps that are Composer or
``bin/magento`` commands (from the release record's step timings, which include their
SSH round trip). Prints the median over RUNS deploys and the slowest steps of our own.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from rig import make_rig  # noqa: E402
from scenario import Shop  # noqa: E402

from fabric_magento_deploy.release import read_records  # noqa: E402

#: Steps that are Composer or Magento's own work (their time is not ours to save).
THEIRS = ("composer install", "di:compile", "dump-autoload", "static content", "db status",
          "cache:flush")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    rig = make_rig(1)
    try:
        shop = Shop(rig)
        shop.deploy()  # mirror cloned, shared dirs made
        ours, walls, own_steps = [], [], {}
        for i in range(runs):
            shop.commit(label=f"v{i + 2}")
            start = time.perf_counter()
            summary = shop.deploy()
            wall = time.perf_counter() - start
            [host] = shop.hosts()
            steps = read_records(host, shop.settings())[summary.release].steps
            theirs = sum(s for name, s in steps.items() if name.startswith(THEIRS))
            ours.append(wall - theirs)
            walls.append(wall)
            for name, seconds in steps.items():
                if not name.startswith(THEIRS):
                    own_steps.setdefault(name, []).append(seconds)
        print(f"code-only deploy on 1 host, {runs} runs: wall {statistics.median(walls):.2f} s, "
              f"our own time {statistics.median(ours):.2f} s (median; "
              f"min {min(ours):.2f}, max {max(ours):.2f})")
        slowest = sorted(own_steps.items(), key=lambda kv: -statistics.median(kv[1]))[:8]
        print("our slowest steps (median): " + ", ".join(
            f"{name} {statistics.median(s) * 1000:.0f} ms" for name, s in slowest))
        print(f"our steps per deploy: {len(own_steps)}")
    finally:
        rig.stop()


if __name__ == "__main__":
    main()
