"""Measured, not asserted: what the storefront health check costs a healthy deploy, and
how long customers see a broken release before it is reverted.

    sudo .venv/bin/python benchmarks/bench_health.py [RUNS]   (default 5)

Three rig hosts with nginx + php-fpm, the shop's base URL a name that does not resolve
(the check finds each host's own web server), the check's defaults (window 1 s).

1. Code-only deploys, alternating with the check (defaults) and without it
   (``DEPLOY_HEALTH_PATHS=none``): median wall time of each and the difference.
2. A release whose storefront answers 500, deployed under load on every host: per host,
   the seconds between the first answer of the broken release and the first answer of
   the previous release again (what customers of that host saw), and the count of 500s.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from load import HttpLoad  # noqa: E402
from rig import make_rig  # noqa: E402
from scenario import Shop  # noqa: E402

BROKEN_LABEL = ("<?php\nreturn PHP_SAPI === 'cli' ? 'label'"
                " : \\Shop\\Catalog\\render_label();\n")


def timed(shop: Shop, **settings: str) -> float:
    start = time.perf_counter()
    shop.deploy(opcache="fcgi", **settings)
    return time.perf_counter() - start


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    rig = make_rig(3)
    try:
        rig.start_web()
        shop = Shop(rig, label="A")
        shop.deploy(opcache="fcgi", health_paths="none")  # mirror cloned, shared dirs made
        checked, unchecked = [], []
        for i in range(runs):
            shop.commit(label=f"v{i}")
            checked.append(timed(shop, health_window="1"))
            shop.commit(label=f"w{i}")
            unchecked.append(timed(shop, health_paths="none"))
        with_check, without = statistics.median(checked), statistics.median(unchecked)
        print(f"code-only deploy, 3 hosts, {runs} runs each (median): with the health check "
              f"{with_check:.2f} s, without {without:.2f} s: the check costs "
              f"{with_check - without:.2f} s ({with_check / without:.2f} x)")

        good = shop.deploy(opcache="fcgi", health_paths="none").release
        shop.commit(files={"app/code/Shop/Catalog/Label.php": BROKEN_LABEL})
        with HttpLoad.on_rig(rig) as load:
            try:
                shop.deploy(opcache="fcgi")
            except Exception as exc:  # noqa: BLE001 (the revert is the expected outcome)
                assert "REVERTED" in str(exc), exc
            load.wait_after(time.time())
        assert {shop.live(h) for h in rig.hosts} == {good}
        for host in rig.hosts:
            samples = [s for s in load.samples if s.host == host.name]
            bad = [s for s in samples if s.status >= 500]
            if not bad:
                print(f"{host.name}: no broken answer seen")
                continue
            back = next((s for s in samples if s.t_start > bad[0].t_start and s.status == 200),
                        None)
            exposed = (back.t_start - bad[0].t_start) if back else float("nan")
            print(f"{host.name}: broken release seen for {exposed:.2f} s "
                  f"({len(bad)} answers 5xx of {len(samples)})")
    finally:
        rig.stop()


if __name__ == "__main__":
    main()
