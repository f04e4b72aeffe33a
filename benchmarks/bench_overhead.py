"""Measured, not asserted: the deploy's own time around Composer and Magento.

    sudo .venv/bin/python benchmarks/bench_overhead.py [RUNS] [-v]   (default 7)

One host of the rig (real sshd), code-only releases, health check off, OPcache strategy
``none`` (a flush costs the same with any tool). Per deploy: wall time minus Composer's
and Magento's own time: the round trips that are only a Composer or ``bin/magento``
command (:data:`THEIRS`, timed around the command, so their SSH round trip counts as
theirs), and every other ``bin/magento`` run inside our batched round trips (its time from
the fake Magento's command log: from its first line of PHP to its exit). Prints the
median over RUNS deploys (the machine may be busy: the median and the minimum say more
than one run), the SSH
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
from roundtrips import Calls, counting  # noqa: E402
from scenario import Shop  # noqa: E402

#: Round trips that are only Composer's or Magento's own work (not ours to save).
THEIRS = ("composer install", "di:compile", "dump-autoload", "static content",
          "setup:db:status", "app:config:status", "cache:flush", "queue:consumers:restart")


def magento_inside(calls: Calls, log: list[dict]) -> float:
    """Seconds of bin/magento runs inside round trips that are not :data:`THEIRS`."""
    total = 0.0
    for (step, seconds), start in zip(calls.steps, calls.started, strict=True):
        if not step.startswith(THEIRS):
            total += sum(e["t"] - e["t_start"] for e in log
                         if start <= e["t_start"] <= start + seconds)
    return total


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
            theirs += magento_inside(calls, shop.log(rig.hosts[0]))
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
