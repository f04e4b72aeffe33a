"""Measured, not asserted: the deploy's own time around Composer and Magento.

    sudo .venv/bin/python benchmarks/bench_overhead.py [RUNS] [-v]   (default 7)

One host of the rig (real sshd), code-only releases, health check off, OPcache strategy
``none`` (a flush costs the same with any tool). Per deploy: wall time minus the round
trips that are Composer or ``bin/magento`` commands (:data:`THEIRS`, timed around each
command, so their SSH round trip counts as theirs). Prints the median over RUNS deploys
(the machine may be busy: the median and the minimum say more than one run), the SSH
round trips per phase (:mod:`roundtrips`), and with ``-v`` every round trip of the last
deploy in order.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from rig import make_rig  # noqa: E402
from roundtrips import counting  # noqa: E402
from scenario import Shop  # noqa: E402

#: Steps that are Composer or Magento's own work (their time is not ours to save).
THEIRS = ("composer install", "di:compile", "dump-autoload", "static content",
          "setup:db:status", "app:config:status", "cache:flush")


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "-v"]
    runs = int(args[0]) if args else 7
    rig = make_rig(1)
    try:
        shop = Shop(rig)
        shop.deploy()  # mirror cloned, shared dirs made
        ours, walls, trips = [], [], []
        for i in range(runs):
            shop.commit(label=f"v{i + 2}")
            with counting() as calls:
                start = time.perf_counter()
                shop.deploy()
                wall = time.perf_counter() - start
            theirs = sum(s for step, s in calls.steps if step.startswith(THEIRS))
            ours.append(wall - theirs)
            walls.append(wall)
            trips.append(calls)
        print(f"code-only deploy on 1 host, {runs} runs: wall {statistics.median(walls):.2f} s, "
              f"our own time {statistics.median(ours):.2f} s (median; "
              f"min {min(ours):.2f}, max {max(ours):.2f})")
        last = trips[-1]
        per_phase = last.ordered()
        print(f"SSH round trips per deploy: {sum(n for _, n in per_phase)} ("
              + ", ".join(f"{phase} {n}" for phase, n in per_phase) + ")")
        if "-v" in sys.argv:
            for step, seconds in last.steps:
                print(f"  {seconds * 1000:7.1f} ms  {step}")
    finally:
        rig.stop()


if __name__ == "__main__":
    main()
