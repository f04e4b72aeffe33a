"""How ``pytest -n`` shares the suite out (``conftest.pytest_xdist_make_scheduler``).

Why a test: the grouping is what keeps two fleets under HTTP load from running side by
side, and it broke once without a sign (xdist's ``loadgroup`` rewrote a field pytest 9.2
stopped reading: test_faults went from 136 s to 710 s). Here a real ``pytest -n 2`` runs
small modules named like ours, and each test says which worker ran it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import HTTP_LOAD, scope_of

TESTS = Path(__file__).resolve().parent
MODULE = '''\
import pytest


@pytest.mark.parametrize("i", range(3))
def test_x(i):
    pass
'''


def test_every_http_load_module_is_one_unit_and_any_other_module_its_own() -> None:
    assert {scope_of(f"tests/{name}::test_a[x@y]") for name in HTTP_LOAD} == {"http_load"}
    assert scope_of("tests/test_deploy.py::test_a[one::two]") == "tests/test_deploy.py"


def test_two_workers_never_share_a_module_or_the_http_load_group(tmp_path: Path) -> None:
    names = [*HTTP_LOAD[:2], "test_other.py", "test_more.py", "test_last.py"]
    for name in names:
        (tmp_path / name).write_text(MODULE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(TESTS)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-n", "2", "-v",
         "-p", "no:cacheprovider", "-p", "no:randomly", "--rootdir", str(tmp_path),
         str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = re.findall(r"^\[(gw\d)\] .*PASSED (\S+)::", proc.stdout, re.MULTILINE)
    assert len(ran) == 3 * len(names), proc.stdout
    workers: dict[str, set[str]] = {}
    for worker, module in ran:
        workers.setdefault(scope_of(module), set()).add(worker)
    assert all(len(w) == 1 for w in workers.values()), workers
    assert len({w for ws in workers.values() for w in ws}) == 2, "one worker did everything"
