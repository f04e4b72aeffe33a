"""The fake Magento shop (``tests/fakeshop``) run directly with the local PHP CLI, no SSH.

Each test gets a deploy-like layout in a temp dir: ``releases/1`` (a git work tree of the
fake with ``vendor/`` installed), ``current -> releases/1``, ``app/etc/env.php`` linked to
``shared/env.php``, and the JSON database installed for release 1. Commands run as
``php bin/magento ...`` from ``current`` so that BP resolution through the symlink is
exercised the way a deploy does it.

Without php/composer/git the tests skip; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import shop
from rig import skip_or_fail

COMPOSER_ENV = {**os.environ, "COMPOSER_ALLOW_SUPERUSER": "1", "COMPOSER_DISABLE_NETWORK": "1",
                "COMPOSER_NO_INTERACTION": "1", "COLUMNS": "80"}


def require_tools(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not missing:
        return
    skip_or_fail("fake shop tests need " + ", ".join(missing))


def composer(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["composer", *args], cwd=tree, env=COMPOSER_ENV, text=True,
                          capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def built_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repo of the fake (label v1) with ``composer install`` done, copied by each test."""
    require_tools("php", "composer", "git")
    tree = tmp_path_factory.mktemp("fakeshop") / "repo"
    shop.make_repo(tree, label="v1")
    proc = composer(tree, "install", "--no-dev", "--prefer-dist", "--no-interaction")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tree


@dataclass
class Site:
    root: Path

    @property
    def current(self) -> Path:
        return self.root / "current"

    @property
    def db(self) -> Path:
        return self.root / "db" / "shop.json"

    @property
    def log(self) -> Path:
        return self.root / "log" / "magento.jsonl"

    @property
    def faults(self) -> Path:
        return self.root / "log" / "faults.json"

    def release(self, name: str) -> Path:
        return self.root / "releases" / name

    def write_env(self, **options: object) -> None:
        env = self.root / "shared" / "env.php"
        env.parent.mkdir(parents=True, exist_ok=True)
        env.write_text(shop.env_php(self.db, command_log=self.log, faults=self.faults,
                                    **options))  # type: ignore[arg-type]

    def new_release(self, name: str, **changes: object) -> Path:
        """Copy release 1 (vendor included), commit ``changes`` in it, link env.php."""
        target = self.release(name)
        shutil.copytree(self.release("1"), target, symlinks=True)
        for build_output in ("generated", "var", "pub/static"):
            for path in (target / build_output).iterdir():
                if not path.name.startswith("."):
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
        if changes:
            shop.commit(target, **changes)  # type: ignore[arg-type]
        return target

    def switch(self, name: str) -> None:
        tmp = self.root / "current.tmp"
        tmp.symlink_to(Path("releases") / name)
        os.replace(tmp, self.current)

    def magento(self, *args: str, release: str | None = None) -> subprocess.CompletedProcess[str]:
        cwd = self.current if release is None else self.release(release)
        return subprocess.run(["php", "bin/magento", *args], cwd=cwd, text=True,
                              capture_output=True, timeout=60, env=COMPOSER_ENV)

    def page(self, release: str | None = None, **kwargs: str) -> tuple[int, str]:
        return shop.storefront(self.current if release is None else self.release(release),
                               **kwargs)


@pytest.fixture
def site(built_tree: Path, tmp_path: Path) -> Site:
    s = Site(tmp_path)
    shutil.copytree(built_tree, s.release("1"), symlinks=True)
    (s.root / "log").mkdir()
    s.write_env()
    (s.release("1") / "app/etc/env.php").symlink_to(s.root / "shared" / "env.php")
    shop.install_db(s.db, s.release("1"))
    s.switch("1")
    return s


def _link_env(release: Path, site: Site) -> None:
    link = release / "app/etc/env.php"
    if not link.is_symlink():
        link.symlink_to(site.root / "shared" / "env.php")


# --------------------------------------------------------------------------- build


def test_composer_works_offline(built_tree: Path, tmp_path: Path) -> None:
    tree = tmp_path / "t"
    shutil.copytree(built_tree, tree, symlinks=True)
    shutil.rmtree(tree / "vendor")
    install = composer(tree, "install", "--no-dev", "--prefer-dist", "--no-interaction")
    assert install.returncode == 0, install.stderr
    dump = composer(tree, "dump-autoload", "-o", "--no-dev")
    assert dump.returncode == 0, dump.stderr
    assert (tree / "vendor/autoload.php").is_file()


def test_without_vendor_bin_magento_fails_like_magento(site: Site) -> None:
    shutil.rmtree(site.release("1") / "vendor")
    proc = site.magento("setup:db:status")
    assert proc.returncode == 1
    assert "Autoload error" in proc.stdout
    assert "Vendor autoload is not found. Please run 'composer install'" in proc.stdout
    assert shop.read_log(site.log)[-1]["exit"] == 1


def test_config_php_format_matches_magento_php_formatter(site: Site) -> None:
    text = (site.release("1") / "app/etc/config.php").read_text()
    assert shop.php_export(shop.read_config_php(site.release("1"))) == text
    assert site.magento("setup:upgrade", "--keep-generated").returncode == 0
    assert (site.release("1") / "app/etc/config.php").read_text() == text  # rewritten as is


# --------------------------------------------------------------------------- db / config status


def test_installed_db_matches_tree(site: Site) -> None:
    status = site.magento("setup:db:status")
    assert (status.returncode, status.stdout) == (0, "All modules are up to date.\n")
    config = site.magento("app:config:status")
    assert (config.returncode, config.stdout) == (0, "Config files are up to date.\n")


def test_db_status_code_newer_than_db(site: Site) -> None:
    site.new_release("2", modules={"Shop_Catalog": "1.1.0"})
    _link_env(site.release("2"), site)
    proc = site.magento("setup:db:status", release="2")
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == [
        "        Shop_Catalog     schema:       1.0.0  ->  1.1.0      ",
        "        Shop_Catalog       data:       1.0.0  ->  1.1.0      ",
        "Run 'setup:upgrade' to update your DB schema and data.",
    ]


def test_db_status_code_older_than_db(site: Site) -> None:
    db = shop.read_db(site.db)
    db["setup_module"]["Shop_Catalog"] = {"schema_version": "1.2.0", "data_version": "1.2.0"}
    site.db.write_text(json.dumps(db))
    proc = site.magento("setup:db:status")
    assert proc.returncode == 2
    # OldDbValidator: stops listing after the first module ahead, glues the text on.
    assert proc.stdout.splitlines() == [
        "        Shop_Catalog     schema:       1.2.0  ->  1.0.0      "
        "The module code base doesn't match the DB schema and data.",
        "Some modules use code versions newer or older than the database.",
        "Run 'setup:upgrade' to update your DB schema and data.",
    ]


def test_db_status_patches_and_declarative_schema(site: Site) -> None:
    site.new_release("2", files={
        "app/code/Shop/Checkout/Setup/Patch/Data/AddCarrier.php": "<?php\n",
        "app/code/Shop/Checkout/etc/db_schema.xml": "<schema/>\n",
    })
    _link_env(site.release("2"), site)
    proc = site.magento("setup:db:status", release="2")
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == [
        "Declarative Schema is not up to date",
        "Data patches are not up to date",
        "Run 'setup:upgrade' to update your DB schema and data.",
    ]
    assert site.magento("setup:upgrade", release="2").returncode == 0
    assert site.magento("setup:db:status", release="2").returncode == 0
    assert "Shop\\Checkout\\Setup\\Patch\\Data\\AddCarrier" in shop.read_db(site.db)["patch_list"]


def test_db_status_not_installed(site: Site) -> None:
    (site.root / "shared/env.php").unlink()
    proc = site.magento("setup:db:status")
    assert proc.returncode == 1
    assert proc.stdout == "No information is available: the Magento application is not installed.\n"
    cache = site.magento("cache:flush")
    assert cache.returncode == 1
    assert 'There are no commands defined in the "cache" namespace.' in cache.stderr


def test_config_status_and_import(site: Site) -> None:
    system = {"default": {"web": {"cookie": {"cookie_lifetime": "7200"}}}}
    site.new_release("2", config_system=system)
    _link_env(site.release("2"), site)
    status = site.magento("app:config:status", release="2")
    assert status.returncode == 2
    assert status.stdout == ("Config files have changed. Run app:config:import or setup:upgrade "
                             "command to synchronize configuration.\n")
    imported = site.magento("app:config:import", release="2")
    assert imported.returncode == 0
    assert imported.stdout.splitlines() == [
        "Processing configurations data from configuration file...",
        "System config was processed",
    ]
    assert site.magento("app:config:status", release="2").returncode == 0
    again = site.magento("app:config:import", release="2")
    assert (again.returncode, again.stdout) == (0, "Nothing to import.\n")
    # the old release's config.php no longer matches what was imported
    assert site.magento("app:config:status").returncode == 2


# --------------------------------------------------------------------------- config:show


def test_config_show_leaf_prints_the_value_alone(site: Site) -> None:
    shown = site.magento("config:show", "web/unsecure/base_url")
    assert (shown.returncode, shown.stdout, shown.stderr) == (0, "http://shop.test/\n", "")
    assert site.magento("config:show", "/web/secure/base_url/").stdout == "http://shop.test/\n"
    # A stored "0" is a value (2.4: no more "doesn't exist" for empty values).
    zero = site.magento("config:show", "web/url/redirect_to_base")
    assert (zero.returncode, zero.stdout) == (0, "0\n")
    shop.set_config(site.db, "web/secure/base_url", "https://secure.shop.test/")
    assert site.magento("config:show", "web/secure/base_url").stdout == "https://secure.shop.test/\n"
    assert shop.read_log(site.log)[-1]["cmd"] == "config:show"


def test_config_show_without_path_lists_every_value_of_the_scope(site: Site) -> None:
    listed = site.magento("config:show")
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == [  # database rows first, then config.php's system
        "web/seo/use_rewrites - 1",
        "web/unsecure/base_url - http://shop.test/",
        "web/secure/base_url - http://shop.test/",
        "web/secure/use_in_frontend - 0",
        "web/secure/use_in_adminhtml - 0",
        "web/url/redirect_to_base - 0",
        "general/locale/code - en_US",
        "dev/static/sign - 1",
    ]


def test_config_show_refuses_sections_groups_and_unknown_paths(site: Site) -> None:
    """2.4.7's PathValidator accepts system.xml field paths only (magento/magento2#39610)."""
    for path in ("web", "web/secure", "web/secure/nope", "shop/x/y"):
        refused = site.magento("config:show", path)
        assert (refused.returncode, refused.stderr) == (1, ""), path
        assert refused.stdout == f'The "{path}" path doesn\'t exist. Verify and try again.\n'


def test_config_show_field_without_value_prints_an_empty_line(site: Site) -> None:
    """config:show reads the database and the files, not config.xml defaults."""
    for path in ("web/secure/offloader_header", "web/cookie/cookie_domain"):
        shown = site.magento("config:show", path)
        assert (shown.returncode, shown.stdout) == (0, "\n"), path


def test_config_show_files_win_over_the_database(site: Site) -> None:
    site.new_release("2", config_system={"default": {
        "web": {"unsecure": {"base_url": "http://config-php.test/"},
                "secure": {"base_url": "http://config-php.test/"}}}})
    _link_env(site.release("2"), site)
    shown = site.magento("config:show", "web/unsecure/base_url", release="2")
    assert shown.stdout == "http://config-php.test/\n"
    site.write_env(system={"default": {"web": {
        "unsecure": {"base_url": "https://env-php.test/"}, "url": {"redirect_to_base": "0"}}}})
    shop.set_config(site.db, "web/url/redirect_to_base", 1)
    assert site.magento("config:show", "web/unsecure/base_url",
                        release="2").stdout == "https://env-php.test/\n"  # env.php wins
    assert site.magento("config:show", "web/secure/base_url",
                        release="2").stdout == "http://config-php.test/\n"
    # InitialConfigSource answers `?: []`: env.php's "0" for the leaf path is dropped and
    # the database's 1 shows; the listing merges whole arrays and shows env.php's 0.
    assert site.magento("config:show", "web/url/redirect_to_base").stdout == "1\n"
    assert "web/url/redirect_to_base - 0" in site.magento("config:show").stdout.splitlines()


def test_config_show_scopes(site: Site) -> None:
    shop.set_config(site.db, "web/unsecure/base_url", "http://store.test/", "stores", 1)
    shop.set_config(site.db, "web/unsecure/base_url", "http://website.test/", "websites", 1)
    store = site.magento("config:show", "--scope=stores", "--scope-code=default",
                         "web/unsecure/base_url")
    assert (store.returncode, store.stdout) == (0, "http://store.test/\n")
    website = site.magento("config:show", "--scope", "website", "--scope-code", "base")
    assert website.stdout == "web/unsecure/base_url - http://website.test/\n"
    assert site.magento("config:show", "web/unsecure/base_url").stdout == "http://shop.test/\n"
    # No fallback: a scope shows what is set at that scope only.
    inherited = site.magento("config:show", "--scope=stores", "--scope-code=default",
                             "web/secure/base_url")
    assert (inherited.returncode, inherited.stdout) == (0, "\n")
    errors = {
        ("--scope=stores", "--scope-code=nope"):
            'The "nope" value doesn\'t exist. Enter another value and try again.',
        ("--scope=planets", "--scope-code=mars"):
            'The "planets" value doesn\'t exist. Enter another value and try again.',
        ("--scope=default", "--scope-code=base"):
            'The "default" scope can\'t include a scope code. Try again without entering a '
            "scope code.",
        ("--scope=websites",): "A scope code is missing. Enter a code and try again.",
        ("--scope-code=1x", "--scope=stores"):
            "The scope code can include only letters (a-z), numbers (0-9) and underscores "
            "(_). Also, the first character must be a letter.",
    }
    for options, message in errors.items():
        failed = site.magento("config:show", *options, "web/unsecure/base_url")
        assert (failed.returncode, failed.stdout) == (1, message + "\n"), options


def test_config_show_environment_variables_need_variables_order_e(site: Site) -> None:
    """CONFIG__DEFAULT__... variables win over everything, but Magento reads them from
    $_ENV, which PHP fills only when variables_order contains E (not the CLI default)."""
    env = {**COMPOSER_ENV, "CONFIG__DEFAULT__WEB__UNSECURE__BASE_URL": "http://from-env.test/"}

    def show(*php_options: str) -> str:
        return subprocess.run(["php", *php_options, "bin/magento", "config:show",
                               "web/unsecure/base_url"], cwd=site.current, env=env,
                              text=True, capture_output=True, timeout=60).stdout

    assert show("-d", "variables_order=GPCS") == "http://shop.test/\n"
    assert show("-d", "variables_order=EGPCS") == "http://from-env.test/\n"


def test_config_show_needs_an_installed_app_and_the_database(site: Site) -> None:
    site.db.rename(site.db.with_name("moved.json"))
    down = site.magento("config:show", "web/unsecure/base_url")
    assert (down.returncode, down.stderr) == (1, "")
    assert down.stdout == f"SQLSTATE[HY000] [2002] No such file or directory ({site.db})\n"
    (site.root / "shared/env.php").unlink()
    missing = site.magento("config:show", "web/unsecure/base_url")
    assert missing.returncode == 1 and missing.stdout == ""
    assert 'There are no commands defined in the "config" namespace.' in missing.stderr


# --------------------------------------------------------------------------- setup:upgrade


def _fill_build_output(release: Path) -> None:
    for rel in ("generated/code/Shop/X.php", "generated/metadata/global.php",
                "pub/static/deployed_version.txt", "pub/static/frontend/Magento/luma/x.css",
                "var/view_preprocessed/pub/static/x.less"):
        (release / rel).parent.mkdir(parents=True, exist_ok=True)
        (release / rel).write_text("x")


def test_setup_upgrade_wipes_generated_and_static(site: Site) -> None:
    release = site.new_release("2", modules={"Shop_Catalog": "1.1.0", "Shop_Reviews": "0.1.0"})
    _link_env(release, site)
    _fill_build_output(release)
    proc = site.magento("setup:upgrade", release="2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:3] == ["Cache types config flushed successfully", "Cache cleared successfully",
                         "File system cleanup:"]
    assert f"{release}/generated/code/Shop" in lines
    assert "Module 'Shop_Reviews':" in lines
    assert lines[-1] == 'Please re-run Magento compile command. Use the command "setup:di:compile"'
    assert sorted(p.name for p in (release / "pub/static").iterdir()) == [".htaccess"]
    assert list((release / "generated/code").iterdir()) == []
    assert list((release / "generated/metadata").iterdir()) == []
    assert list((release / "var/view_preprocessed").iterdir()) == []
    db = shop.read_db(site.db)
    assert db["setup_module"]["Shop_Catalog"] == {"schema_version": "1.1.0",
                                                  "data_version": "1.1.0"}
    assert db["setup_module"]["Shop_Reviews"]["schema_version"] == "0.1.0"
    assert [h["event"] for h in db["history"]] == [
        "install", "setup:upgrade schema", "setup:upgrade data"]  # config unchanged: no import
    assert "'Shop_Reviews' => 1" in (release / "app/etc/config.php").read_text()


def test_setup_upgrade_keep_generated(site: Site) -> None:
    release = site.release("1")
    _fill_build_output(release)
    proc = site.magento("setup:upgrade", "--keep-generated", "-n")
    assert proc.returncode == 0
    assert "File system cleanup:" not in proc.stdout
    assert "Please re-run Magento compile command" not in proc.stdout
    assert proc.stdout.splitlines()[-1] == "Nothing to import."
    assert (release / "generated/code/Shop/X.php").exists()
    assert (release / "pub/static/deployed_version.txt").exists()


def test_setup_upgrade_older_code_records_code_versions(site: Site) -> None:
    new = site.new_release("2", modules={"Shop_Catalog": "1.1.0"})
    _link_env(new, site)
    assert site.magento("setup:upgrade", release="2").returncode == 0
    assert site.magento("setup:upgrade", release="1").returncode == 0  # Magento 2.4 "downgrades"
    assert shop.read_db(site.db)["setup_module"]["Shop_Catalog"]["schema_version"] == "1.0.0"


# --------------------------------------------------------------------------- maintenance


def test_maintenance_through_symlink_uses_physical_release(site: Site) -> None:
    flag = site.release("1") / "var/.maintenance.flag"
    on = site.magento("maintenance:enable", "--ip=10.0.0.1", "--ip=192.168.0.0/16")
    assert on.returncode == 0
    assert on.stdout.splitlines() == ["Enabled maintenance mode",
                                      "Set exempt IP-addresses: 10.0.0.1, 192.168.0.0/16"]
    assert flag.exists()
    assert (site.release("1") / "var/.maintenance.ip").read_text() == "10.0.0.1,192.168.0.0/16"
    status = site.magento("maintenance:status")
    assert status.stdout.splitlines() == ["Status: maintenance mode is active",
                                          "List of exempt IP-addresses: 10.0.0.1 192.168.0.0/16"]
    off = site.magento("maintenance:disable")
    assert (off.returncode, off.stdout) == (0, "Disabled maintenance mode\n")
    assert not flag.exists()
    assert site.magento("maintenance:status").stdout.startswith(
        "Status: maintenance mode is not active\n")
    assert {e["bp"] for e in shop.read_log(site.log)} == {str(site.release("1").resolve())}
    bad = site.magento("maintenance:enable", "--ip=not-an-ip")
    assert (bad.returncode, bad.stdout) == (1, "Invalid IP not-an-ip\n")


# --------------------------------------------------------------------------- build commands


def test_static_content_deploy(site: Site) -> None:
    static = site.release("1") / "pub/static"
    proc = site.magento("setup:static-content:deploy", "--jobs", "4", "--content-version=42",
                        "--theme", "Magento/luma", "-t", "Magento/backend", "en_US", "nl_NL")
    assert proc.returncode == 0, proc.stderr
    assert "Deploy using quick strategy" in proc.stdout
    assert (static / "deployed_version.txt").read_text() == "42"
    assert (static / "frontend/Magento/luma/nl_NL/css/styles-m.css").is_file()
    assert (static / "adminhtml/Magento/backend/en_US/css/styles.css").is_file()
    assert not (static / "frontend/Magento/blank").exists()
    assert site.page()[1].count("static=42") == 1

    bad = site.magento("setup:static-content:deploy", "--content-version=4-2")
    assert bad.returncode == 1
    assert 'Argument "content-version" has invalid value' in bad.stderr

    strategy = site.magento("setup:static-content:deploy", "-s", "fast", "--content-version=43")
    assert strategy.returncode == 1
    assert ("Error happened during deploy process: Wrong deploy strategy type: fast"
            in strategy.stdout)
    assert (static / "deployed_version.txt").read_text() == "43"  # written before the failure


def test_static_content_deploy_refuses_outside_production_without_force(site: Site) -> None:
    site.write_env(mode="default")
    proc = site.magento("setup:static-content:deploy")
    assert proc.returncode == 1
    assert proc.stdout == ""
    text = " ".join(proc.stderr.split())  # Symfony wraps the block at 80 columns
    assert "NOTE: Manual static content deployment is not required" in text.replace("  ", "")
    assert "setup:static-content:deploy [-f|--force]" in proc.stderr
    forced = site.magento("setup:static-content:deploy", "-f")
    assert forced.returncode == 0
    assert (site.release("1") / "pub/static/deployed_version.txt").read_text().isdigit()


def test_di_compile_cleans_every_frontend_of_its_prefix_like_magento(site: Site) -> None:
    """Magento's DiCompileCommand calls App\\Cache::clean() without tags: every frontend
    of the pool, every entry tagged with the frontend's id-prefixed MAGE tag. With the
    id_prefix shared by every release (as env.php has it), that is the live shop's cache."""
    cache, page_cache = site.root / "db/cache/cache", site.root / "db/cache/page_cache"
    ours = [cache / "40d_config--db_is_up_to_date", cache / "40d_layout--x",
            cache / "40d_translate--y", page_cache / "40d_full_page--home"]
    theirs = [cache / "abc_config--other_prefix", page_cache / "abc_full_page--other"]
    for entry in ours + theirs:
        entry.write_text("x")
    proc = site.magento("setup:di:compile")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "Compilation was started."
    assert lines[-1] == "Generated code and dependency injection configuration successfully."
    assert [e.name for e in ours if e.exists()] == []
    assert [e.name for e in theirs if e.exists()] == [e.name for e in theirs]


def test_di_compile_generates_loadable_interceptors_and_factories(site: Site) -> None:
    release = site.release("1")
    (release / "generated/metadata").mkdir(parents=True, exist_ok=True)
    (release / "generated/metadata/stale.php").write_text("<?php return [];")
    assert site.magento("setup:di:compile").returncode == 0
    assert sorted(p.name for p in (release / "generated/metadata").iterdir()) == [
        "adminhtml.php", "crontab.php", "frontend.php", "global.php", "primary.php",
        "webapi_rest.php"]
    code = sorted(str(p.relative_to(release / "generated/code"))
                  for p in (release / "generated/code").rglob("*.php"))
    assert code == ["Shop/Catalog/Model/Product/Interceptor.php",
                    "Shop/Catalog/Model/ProductFactory.php"]
    # Loadable through composer.json's PSR-0 mapping (no class map needed), plugin applied.
    script = ('require "vendor/autoload.php"; $p = (new Shop\\Checkout\\Model\\Cart('
              'new Shop\\Catalog\\Model\\ProductFactory()))->add(" ball "); '
              'echo get_class($p), "|", $p->getName();')
    proc = subprocess.run(["php", "-r", script], cwd=release, capture_output=True, text=True,
                          timeout=30)
    assert proc.stdout == "Shop\\Catalog\\Model\\Product\\Interceptor|ball (plugin)", proc.stderr


def test_di_compile_skips_disabled_modules(site: Site) -> None:
    config = shop.read_config_php(site.release("1"))
    config["modules"]["Shop_Checkout"] = 0
    (site.release("1") / shop.CONFIG_FILE).write_text(shop.php_export(config))
    assert site.magento("setup:di:compile").returncode == 0
    # The factory is asked for by Shop_Checkout only: disabled, nothing generates it.
    generated = site.release("1") / "generated/code/Shop/Catalog/Model"
    assert (generated / "Product/Interceptor.php").is_file()
    assert not (generated / "ProductFactory.php").exists()


INTERCEPTOR = "Shop\\\\Catalog\\\\Model\\\\Product\\\\Interceptor"  # as var_export writes it


def classmap(release: Path) -> str:
    return (release / "vendor/composer/autoload_classmap.php").read_text()


@pytest.mark.parametrize("order", ["di:compile first", "dump-autoload first"])
def test_optimized_class_map_has_generated_classes_only_after_di_compile(
    site: Site, order: str
) -> None:
    """The build order docs/deploy.md promises: ``composer dump-autoload -o`` after
    ``setup:di:compile``, so the class map lists the generated classes. Swapped, the map
    is written while generated/code is empty and misses them: this must show."""
    release = site.release("1")
    steps = [lambda: site.magento("setup:di:compile"),
             lambda: composer(release, "dump-autoload", "-o", "--no-dev")]
    for step in steps if order == "di:compile first" else steps[::-1]:
        proc = step()
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (release / "generated/code/Shop/Catalog/Model/Product/Interceptor.php").is_file()
    listed = {"Interceptor": INTERCEPTOR in classmap(release),
              "Factory": "Shop\\\\Catalog\\\\Model\\\\ProductFactory" in classmap(release)}
    expected = order == "di:compile first"
    assert listed == {"Interceptor": expected, "Factory": expected}, classmap(release)


def test_cache_commands(site: Site) -> None:
    cache = site.root / "db/cache/cache"
    (cache / "40d_config--a").write_text("x")
    (cache / "zzz_layout--b").write_text("x")
    clean = site.magento("cache:clean", "config")
    assert clean.stdout == "Cleaned cache types:\nconfig\n"
    assert not (cache / "40d_config--a").exists() and (cache / "zzz_layout--b").exists()
    flush = site.magento("c:f")
    assert flush.returncode == 0
    assert flush.stdout.splitlines()[:3] == ["Flushed cache types:", "config", "layout"]
    assert list(cache.iterdir()) == []
    bad = site.magento("cache:clean", "nope")
    assert bad.returncode == 1
    assert "The following requested cache types are not supported: 'nope'." in bad.stderr
    assert [e["cmd"] for e in shop.read_log(site.log)] == ["cache:clean", "cache:flush",
                                                           "cache:clean"]


def test_unknown_commands_and_options(site: Site) -> None:
    unknown = site.magento("deploy:foo")
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert 'Command "deploy:foo" is not defined.' in unknown.stderr
    namespace = site.magento("nope:thing")
    assert 'There are no commands defined in the "nope" namespace.' in namespace.stderr
    option = site.magento("setup:upgrade", "--frobnicate", "-q")
    assert option.returncode == 1
    assert 'The "--frobnicate" option does not exist.' in option.stderr
    assert site.magento("-n", "--no-ansi", "-v", "s:db:s").returncode == 0  # abbreviation
    assert shop.read_log(site.log)[-1]["cmd"] == "setup:db:status"


# --------------------------------------------------------------------------- test hooks


def test_faults_sleep_and_failures(site: Site) -> None:
    shop.write_faults(site.faults, {
        "setup:db:status": {"sleep": 0.4},
        "setup:upgrade": {"exit": 1, "message": "SQLSTATE[HY000]: General error: 2006 gone away"},
        "cache:flush": {"exit": 1, "message": "Redis connection refused"},
    })
    started = time.monotonic()
    assert site.magento("setup:db:status").returncode == 0
    assert time.monotonic() - started >= 0.4
    before = shop.read_db(site.db)
    upgrade = site.magento("setup:upgrade", "--keep-generated")
    assert (upgrade.returncode, upgrade.stdout) == (
        1, "SQLSTATE[HY000]: General error: 2006 gone away\n")
    assert shop.read_db(site.db) == before  # failed before doing anything
    flush = site.magento("cache:flush")
    assert flush.returncode == 1 and "Redis connection refused" in flush.stderr
    shop.write_faults(site.faults, {})
    assert site.magento("cache:flush").returncode == 0


def test_storefront_faults_answer_500_or_hang(site: Site) -> None:
    site.magento("setup:static-content:deploy", "--content-version=1")
    shop.write_faults(site.faults, {"storefront": {"status": 500, "message": "Redis gone"}})
    status, body = site.page()
    assert status == 500
    text = shop.page_text(body)
    assert "There has been an error processing your request" in text and "Redis gone" in text
    shop.write_faults(site.faults, {"storefront": {"status": 500, "path": "/broken"}})
    assert site.page()[0] == 200
    status, body = site.page(uri="/broken?x=1")
    assert status == 500 and "Injected storefront failure (test hook)" in shop.page_text(body)
    shop.write_faults(site.faults, {"storefront": {"status": 503}})
    assert site.page() == (503, "Injected status 503 (test hook)\n")
    shop.write_faults(site.faults, {"storefront": {"sleep": 0.6}})
    started = time.monotonic()
    assert site.page()[0] == 200
    assert time.monotonic() - started >= 0.6
    shop.write_faults(site.faults, {"storefront": {"sleep": 30}})
    with shop.serve_pub(site.current) as base:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            shop.http_request(base, "/", timeout=1.0)
        assert time.monotonic() - started < 5
        assert shop.http_request(base, "/health_check.php", timeout=5).status == 200
    # The maintenance check comes first: a flagged release answers 503 at once.
    site.magento("maintenance:enable")
    started = time.monotonic()
    assert site.page()[0] == 503
    assert time.monotonic() - started < 5


def test_command_log(site: Site) -> None:
    site.magento("maintenance:status")
    site.magento("c:c", "--bogus")
    first, second = shop.read_log(site.log)
    assert first["cmd"] == "maintenance:status" and first["exit"] == 0
    assert first["argv"] == ["maintenance:status"]
    assert first["t_start"] <= first["t"] <= second["t_start"]
    assert first["bp"] == str(site.release("1").resolve())
    assert second["cmd"] == "cache:clean" and second["exit"] == 1


# --------------------------------------------------------------------------- storefront


def test_storefront_ok(site: Site) -> None:
    site.magento("setup:static-content:deploy", "--content-version=7")
    status, body = site.page()
    assert status == 200
    assert shop.page_fields(body) == {"label": "v1", "bp": str(site.release("1").resolve()),
                                      "static": "7", "mode": "production"}
    assert "/static/version7/frontend/Magento/luma/en_US/css/styles-m.css" in body


def test_storefront_without_static_version_in_production(site: Site) -> None:
    status, body = site.page()
    assert status == 500
    text = shop.page_text(body)
    assert "There has been an error processing your request" in text
    assert "Unable to retrieve deployment version of static files from the file system." in text
    assert "Error log record number:" in text
    assert list((site.release("1") / "var/report").iterdir())


def test_storefront_db_checks_and_their_cache(site: Site) -> None:
    site.magento("setup:static-content:deploy", "--content-version=1")
    assert site.page()[0] == 200  # caches db_is_up_to_date (shared cache, id_prefix 40d_)
    new = site.new_release("2", label="v2", modules={"Shop_Catalog": "1.1.0"})
    _link_env(new, site)
    site.magento("setup:static-content:deploy", "--content-version=2", release="2")
    assert site.page("2")[0] == 200  # the cached check is trusted, like Magento does
    site.magento("cache:clean", "config")
    status, body = site.page("2")
    assert status == 500
    assert ('Please upgrade your database: Run "bin/magento setup:upgrade" from the Magento root '
            "directory.\nThe following modules are outdated:\nShop_Catalog schema: current "
            "version - 1.0.0, required version - 1.1.0") in shop.page_text(body)
    assert site.magento("setup:upgrade", "--keep-generated", release="2").returncode == 0
    assert shop.page_fields(site.page("2")[1])["label"] == "v2"  # cached as up to date again
    assert site.page("1")[0] == 200  # ... so the old code trusts it too
    site.magento("cache:flush")
    old_status, old_body = site.page("1")  # old code, newer database
    assert old_status == 500
    assert ('Please update your modules: Run "composer install" from the Magento root directory.'
            "\nThe following modules are outdated:\nShop_Catalog schema: code version - 1.0.0, "
            "database version - 1.1.0") in shop.page_text(old_body)
    site.write_env(blue_green=True)
    assert site.page("1")[0] == 200  # deployment/blue_green/enabled skips both checks


def test_storefront_config_change(site: Site) -> None:
    site.magento("setup:static-content:deploy", "--content-version=1")
    system = {"default": {"general": {"locale": {"code": "nl_NL"}}}}
    new = site.new_release("2", config_system=system)
    _link_env(new, site)
    assert site.magento("app:config:import", release="2").returncode == 0
    status, body = site.page("1")
    assert status == 500
    assert ('The configuration file has changed. Run the "app:config:import" or the '
            '"setup:upgrade" command to synchronize the configuration.') in shop.page_text(body)


def test_storefront_maintenance(site: Site) -> None:
    site.magento("setup:static-content:deploy", "--content-version=1")
    site.magento("maintenance:enable", "--ip=10.1.2.3")
    status, body = site.page()
    assert status == 503
    assert "Service Temporarily Unavailable" in body and "maintenance" in body
    assert site.page(remote_addr="10.1.2.3")[0] == 200
    site.write_env(mode="developer")
    status, body = site.page()
    assert status == 500
    assert body.startswith("1 exception(s):\nException #0 (Exception): Unable to proceed: the "
                           "maintenance mode is enabled.")


def test_storefront_not_installed(site: Site) -> None:
    (site.root / "shared/env.php").unlink()
    status, body = site.page()
    assert status == 500
    assert "Application is not installed yet." in shop.page_text(body)


# --------------------------------------------------------------------------- base URL redirect


def redirecting(site: Site, code: int = 1, **urls: str) -> None:
    """Static content deployed; web/url/redirect_to_base = ``code``; ``urls``: path -> value
    (``unsecure`` / ``secure`` for the base URLs)."""
    site.magento("setup:static-content:deploy", "--content-version=1")
    shop.set_config(site.db, "web/url/redirect_to_base", code)
    for name, value in urls.items():
        shop.set_config(site.db, f"web/{name}/base_url", value)


def test_storefront_redirects_a_foreign_host_to_the_base_url_302(site: Site) -> None:
    redirecting(site)
    with shop.serve_pub(site.current) as base:
        moved = shop.http_request(base, "/catalog/item.html?colour=red")  # Host: 127.0.0.1:port
        assert (moved.status, moved.body) == (302, "")
        assert moved.headers["location"] == "http://shop.test/catalog/item.html"  # no query
        assert moved.headers["cache-control"] == "max-age=0, must-revalidate, no-cache, no-store"
        assert moved.headers["pragma"] == "no-cache"
        other = shop.http_request(base, "/", host="www.shop.test")
        assert (other.status, other.headers["location"]) == (302, "http://shop.test/")
        # The base URL's host on any port: getHttpHost() drops the port.
        for host in ("shop.test", "shop.test:8080"):
            page = shop.http_request(base, "/catalog/item.html", host=host)
            assert page.status == 200, host
            assert shop.page_fields(page.body)["label"] == "v1"
        # A POST is not redirected (the frontend is not https-only).
        assert shop.http_request(base, "/", method="POST").status == 200
        # health_check.php is its own script: no redirect.
        assert shop.http_request(base, "/health_check.php").status == 200
        # Without web server rewrites Magento's links go through index.php.
        shop.set_config(site.db, "web/seo/use_rewrites", 0)
        moved = shop.http_request(base, "/index.php/catalog/item.html")
        assert moved.headers["location"] == "http://shop.test/index.php/catalog/item.html"


def test_storefront_redirect_301_to_https_and_what_counts_as_secure(site: Site) -> None:
    redirecting(site, 301, unsecure="https://shop.test/", secure="https://shop.test/")
    with shop.serve_pub(site.current) as base:
        plain = shop.http_request(base, "/cart", host="shop.test")
        assert (plain.status, plain.headers["location"]) == (301, "https://shop.test/cart")
        proxied = {"X-Forwarded-Proto": "https"}  # TLS ended at a proxy
        assert shop.http_request(base, "/cart", host="shop.test", headers=proxied).status == 200
        assert shop.http_request(base, "/cart", host="shop.test",
                                 headers={"X-Forwarded-Proto": "HTTPS"}).status == 301
        shop.set_config(site.db, "web/secure/offloader_header", "X-Forwarded-Scheme")
        assert shop.http_request(base, "/cart", host="shop.test", headers=proxied).status == 301
        assert shop.http_request(base, "/cart", host="shop.test",
                                 headers={"X-Forwarded-Scheme": "https"}).status == 200
    with shop.serve_pub(site.current, https=True) as base:  # fastcgi_param HTTPS on
        assert shop.http_request(base, "/cart", host="shop.test").status == 200
        wrong = shop.http_request(base, "/cart", host="10.0.0.1")
        assert (wrong.status, wrong.headers["location"]) == (301, "https://shop.test/cart")
    # $_SERVER['HTTPS'] and port 443 without a web server (the PHP CLI: status only).
    for server in ({"HTTPS": "on"}, {"SERVER_PORT": "443"}):
        assert site.page(server={"HTTP_HOST": "shop.test", **server})[0] == 200, server
    assert site.page(server={"HTTP_HOST": "shop.test", "HTTPS": "off"})[0] == 301


def test_storefront_secure_request_is_compared_with_the_secure_base_url(site: Site) -> None:
    """An https request to a shop whose secure base URL is http: redirected to http (and a
    proxy adding X-Forwarded-Proto would loop), as Magento does with that setting."""
    redirecting(site)
    shop.set_config(site.db, "web/secure/use_in_frontend", 1)
    with shop.serve_pub(site.current, https=True) as base:
        moved = shop.http_request(base, "/a", host="shop.test")
        assert (moved.status, moved.headers["location"]) == (302, "http://shop.test/a")
    with shop.serve_pub(site.current) as base:  # http request, unsecure base URL http: fine
        assert shop.http_request(base, "/a", host="shop.test").status == 200


def test_storefront_without_redirect(site: Site) -> None:
    site.magento("setup:static-content:deploy", "--content-version=1")
    with shop.serve_pub(site.current) as base:
        # install_db's default: web/url/redirect_to_base = 0, any host gets the page.
        assert shop.http_request(base, "/", host="anything.test").status == 200
        shop.set_config(site.db, "web/url/redirect_to_base", 1)
        assert shop.http_request(base, "/", host="anything.test").status == 302
        # No base URL in the database: Magento's {{base_url}} is the request's own URL.
        for scope_path in ("web/unsecure/base_url", "web/secure/base_url"):
            shop.set_config(site.db, scope_path, None)
        assert shop.http_request(base, "/", host="anything.test").status == 200


def test_storefront_under_maintenance_answers_503_not_a_redirect(site: Site) -> None:
    redirecting(site)
    assert site.page()[0] == 302  # HTTP_HOST localhost
    site.magento("maintenance:enable")
    status, body = site.page()
    assert status == 503 and "Service Temporarily Unavailable" in body


def test_storefront_configuration_is_cached_until_the_config_cache_is_cleaned(
        site: Site) -> None:
    redirecting(site)
    assert site.page()[0] == 302
    shop.set_config(site.db, "web/url/redirect_to_base", 0, clean_cache=False)  # direct SQL
    assert site.page()[0] == 302
    assert site.magento("config:show", "web/url/redirect_to_base").stdout == "0\n"
    site.magento("cache:clean", "config")
    assert site.page()[0] == 200


def test_storefront_database_checks_come_before_the_redirect(site: Site) -> None:
    redirecting(site)
    new = site.new_release("2", modules={"Shop_Catalog": "1.1.0"})
    _link_env(new, site)
    site.magento("setup:static-content:deploy", "--content-version=2", release="2")
    site.magento("cache:clean", "config")
    status, body = site.page("2")
    assert status == 500 and "Please upgrade your database" in shop.page_text(body)


# --------------------------------------------------------------------------- pub/ entry points


STYLES = "frontend/Magento/luma/en_US/css/styles-m.css"


def static_php(site: Site, resource: str) -> tuple[int, str]:
    """pub/static.php as nginx's fallback calls it: ``/static.php?resource=<resource>``."""
    return shop.run_pub(site.current, "static.php", uri=f"/static.php?resource={resource}")


def test_static_php_in_production_answers_404_and_publishes_nothing(site: Site) -> None:
    """Magento's StaticResource: production mode without static_content_on_demand_in_
    production gives 404 at once. A mis-versioned asset URL therefore stays broken."""
    site.magento("setup:static-content:deploy", "--content-version=1", "-t", "Magento/blank")
    for resource in (STYLES, f"version1.2/{STYLES}", "nonsense"):
        assert static_php(site, resource) == (404, "")
    assert not (site.release("1") / "pub/static/frontend/Magento/luma").exists()


def test_static_php_publishes_on_demand_outside_production(site: Site) -> None:
    site.write_env(mode="default")
    status, body = static_php(site, STYLES)
    assert status == 200
    published = site.release("1") / "pub/static" / STYLES
    assert published.read_text() == body and "frontend/Magento/luma/en_US" in body
    # Unknown theme, file no theme produces, too few parts: Magento's 404 page.
    for resource in ("frontend/Magento/nope/en_US/css/styles-m.css",
                     "frontend/Magento/luma/en_US/css/unknown.css", "frontend/Magento/luma/x"):
        status, body = static_php(site, resource)
        assert (status, "404 error: Page not found." in body) == (404, True), resource
    site.write_env(mode="production", static_content_on_demand_in_production=True)
    published.unlink()
    assert static_php(site, STYLES)[0] == 200 and published.is_file()
    assert static_php(site, "frontend/Magento/luma")[0] == 404  # unparsable: plain 404
    site.write_env(mode="developer")
    status, body = static_php(site, "frontend/Magento/luma/x")
    assert (status, body) == (404, "Requested path 'frontend/Magento/luma/x' is wrong.\n")


def test_errors_404_and_get_php(site: Site) -> None:
    status, body = shop.run_pub(site.current, "errors/404.php", uri="/nowhere.php")
    assert status == 404
    assert "404 error: Page not found." in shop.page_text(body)
    media = site.release("1") / "pub/media/catalog/a.txt"
    media.parent.mkdir(parents=True)
    media.write_text("image\n")
    assert shop.run_pub(site.current, "get.php", uri="/media/catalog/a.txt") == (200, "image\n")
    assert shop.run_pub(site.current, "get.php", uri="/media/catalog/b.jpg") == (404, "")
    assert shop.run_pub(site.current, "get.php", uri="/media/../app/etc/env.php")[0] == 404
