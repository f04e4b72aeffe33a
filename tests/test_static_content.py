"""Static content as real themes need it: per area, admin theme kept, extra options passed."""

from __future__ import annotations

import pytest
from scenario import Shop

pytestmark = pytest.mark.real_hosts


def test_a_frontend_theme_with_admin_locales_builds_both_areas_with_one_version(rig1) -> None:
    shop = Shop(rig1)
    web1 = rig1.host("web1")
    rel = shop.deploy(themes="frontend:Magento/luma", locales="en_US de_DE adminhtml:en_US",
                      static_args="--no-html-minify").release
    static = shop.release_path(web1, rel, "pub/static")
    packages = sorted(str(p.relative_to(static)) for p in static.glob("*/*/*/*") if p.is_dir())
    assert packages == ["adminhtml/Magento/backend/en_US", "frontend/Magento/luma/de_DE",
                        "frontend/Magento/luma/en_US"]
    runs = [e["argv"] for e in shop.log(web1) if e["cmd"] == "setup:static-content:deploy"]
    assert len(runs) == 2
    versions = {a for run in runs for a in run if a.startswith("--content-version=")}
    assert versions == {f"--content-version={rel.replace('.', '')}"}
    assert all("--no-html-minify" in run for run in runs)
    assert (static / "deployed_version.txt").read_text().strip() == rel.replace(".", "")
