"""Blue/green mode's refusals and its env.php edit, on real hosts (the run under load is
tests/test_under_load.py::test_blue_green_schema_release_under_load).

The edit is textual: every test writes a real env.php shape on a rig host, lets
:func:`bluegreen.enable` (over SSH, with the host's PHP) set the flag, and compares the
whole file byte for byte with the original plus only the inserted or changed line; a
refusal leaves every byte, the inode and the mtime as they were; no temporary file is
ever left next to the file.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from rig import DEPLOY_USER, WebHost, add_deploy_user_to_group
from scenario import Shop, polling

from fabric_magento_deploy import bluegreen
from fabric_magento_deploy.deploy import DeployError

pytestmark = pytest.mark.real_hosts

ETC = "/srv/shop/shared/app/etc"
ENV_PHP = f"{ETC}/env.php"
FLAG = "'deployment' => ['blue_green' => ['enabled' => true]],"
ADD_BY_HAND = ("Add the flag by hand, in the array it returns (`return [`), add the line:\n"
               f"    {FLAG}")

# What ops teams write: comments, a secret read from the PHP-FPM pool's environment
# (env[DB_PASSWORD] in the pool; an SSH session does not have it), a constant.
PRODUCTION = """<?php
/**
 * shop.example.com, production. Managed by ops (role magento_env): see ops/README.md.
 * Secrets come from the PHP-FPM pool (env[DB_PASSWORD] in www.conf).
 */
return [
    'backend' => [
        'frontName' => 'admin_4f8k2'
    ],
    'crypt' => [
        'key' => '5e1d5a8a2b3c4d5e6f708192a3b4c5d6'
    ],
    'db' => [
        'table_prefix' => '',
        'connection' => [
            'default' => [
                'host' => 'db.internal',
                'dbname' => 'magento',
                'username' => 'magento',
                'password' => getenv('DB_PASSWORD'), // from the pool, never in this file
                'model' => 'mysql4',
                'engine' => 'innodb',
                'active' => '1',
                'driver_options' => [
                    \\PDO::ATTR_TIMEOUT => 5,
                ],
            ],
        ],
    ],
    'MAGE_MODE' => 'production',
    # Redis for both caches, see ops/redis.md
    'cache' => [
        'frontend' => [
            'default' => ['backend' => 'Cm_Cache_Backend_Redis', 'id_prefix' => '4f8_'],
            'page_cache' => ['backend' => 'Cm_Cache_Backend_Redis', 'id_prefix' => '4f8_'],
        ],
    ],
];
"""

# (original, expected): the expected text is the original with only the inserted line
# or the changed token.
SHAPES = {
    "false": (
        "<?php\nreturn [\n    'MAGE_MODE' => 'production',\n    'deployment' => [\n"
        "        'blue_green' => [\n            'enabled' => false\n        ]\n    ],\n];\n",
        "<?php\nreturn [\n    'MAGE_MODE' => 'production',\n    'deployment' => [\n"
        "        'blue_green' => [\n            'enabled' => true\n        ]\n    ],\n];\n"),
    "FALSE, other quotes and spacing": (
        '<?php return ["deployment"=>["blue_green"=>["enabled"=>FALSE]], "x" => 1];\n',
        '<?php return ["deployment"=>["blue_green"=>["enabled"=>TRUE]], "x" => 1];\n'),
    "0": (
        "<?php\nreturn ['deployment' => ['blue_green' => ['enabled' => 0]]];\n",
        "<?php\nreturn ['deployment' => ['blue_green' => ['enabled' => true]]];\n"),
    "array() as var_export writes it": (
        "<?php\nreturn array (\n  'deployment' => \n  array (\n    'blue_green' => \n"
        "    array (\n      'enabled' => false,\n    ),\n  ),\n);\n",
        "<?php\nreturn array (\n  'deployment' => \n  array (\n    'blue_green' => \n"
        "    array (\n      'enabled' => true,\n    ),\n  ),\n);\n"),
    "deployment without blue_green, a comment in it": (
        "<?php\nreturn [\n    'deployment' => [ // see the runbook\n        // nothing yet\n"
        "    ],\n    'MAGE_MODE' => 'production',\n];\n",
        "<?php\nreturn [\n    'deployment' => [ // see the runbook\n"
        "        'blue_green' => ['enabled' => true],\n        // nothing yet\n"
        "    ],\n    'MAGE_MODE' => 'production',\n];\n"),
    "deployment empty, on one line": (
        "<?php\nreturn ['MAGE_MODE' => 'production', 'deployment' => []];\n",
        "<?php\nreturn ['MAGE_MODE' => 'production', 'deployment' => "
        "['blue_green' => ['enabled' => true]]];\n"),
    "blue_green without enabled": (
        "<?php\nreturn [\n    'deployment' => [\n        'blue_green' => [\n"
        "        ],\n    ],\n];\n",
        "<?php\nreturn [\n    'deployment' => [\n        'blue_green' => [\n"
        "            'enabled' => true,\n        ],\n    ],\n];\n"),
    "no deployment, array() of Magento 2.1": (
        "<?php\nreturn array (\n  'backend' => \n  array (\n    'frontName' => 'admin',\n  ),\n"
        "  'MAGE_MODE' => 'production',\n);\n",
        "<?php\nreturn array (\n"
        "  'deployment' => array('blue_green' => array('enabled' => true)),\n"
        "  'backend' => \n  array (\n    'frontName' => 'admin',\n  ),\n"
        "  'MAGE_MODE' => 'production',\n);\n"),
    "CRLF line ends": (
        "<?php\r\nreturn [\r\n    'MAGE_MODE' => 'production',\r\n];\r\n",
        f"<?php\r\nreturn [\r\n    {FLAG}\r\n    'MAGE_MODE' => 'production',\r\n];\r\n"),
}


# --------------------------------------------------------------------------- helpers


def put(host: WebHost, text: str, path: str = ENV_PHP, *, mode: int = 0o640,
        owner: str = DEPLOY_USER, group: str = DEPLOY_USER) -> Path:
    """Write ``text`` at ``path`` on ``host`` with this owner, group and mode."""
    file = host.inside(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(text.encode())
    os.chown(file, pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid)
    os.chmod(file, mode)
    return file


def owner_group_mode(file: Path) -> tuple[str, str, str]:
    st = file.stat()
    return (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
            f"{st.st_mode & 0o7777:o}")


def fingerprint(file: Path) -> tuple[bytes, int, int, tuple[str, str, str]]:
    """Bytes, inode, mtime (ns), owner/group/mode: what "nothing changed" compares."""
    st = file.stat()
    return file.read_bytes(), st.st_ino, st.st_mtime_ns, owner_group_mode(file)


@contextmanager
def temporary_files(directory: Path) -> Iterator[dict[str, tuple[str, int]]]:
    """Every other file seen in ``directory`` while the block runs: name -> (group, mode)
    (the most open seen). Afterwards the directory must hold only what it held before."""
    before = sorted(os.listdir(directory))
    seen: dict[str, tuple[str, int]] = {}

    def look() -> None:
        for name in os.listdir(directory):
            if name in before:
                continue
            try:
                st = os.lstat(directory / name)
            except FileNotFoundError:
                continue
            mode = st.st_mode & 0o777
            if mode >= seen.get(name, ("", -1))[1]:
                seen[name] = (grp.getgrgid(st.st_gid).gr_name, mode)

    with polling(look):
        yield seen
    assert sorted(os.listdir(directory)) == before, "a temporary file was left behind"


def never_more_open(seen: dict[str, tuple[str, int]], group: str, mode: int) -> None:
    """A temporary file was readable by no one the original is not readable by: owner-only
    until it has the original's group and mode."""
    for name, (got_group, got_mode) in seen.items():
        assert (got_mode & ~0o700) == 0 or (got_group == group and (got_mode & ~mode) == 0), \
            f"{name}: group {got_group}, mode {got_mode:o}"


@pytest.fixture
def www_data() -> None:
    """The deploy user in group www-data, as on hosts where PHP-FPM (user www-data) reads
    env.php through its group (deployer:www-data 0640): a file the deploy user writes can
    only be given a group it belongs to. Made once on this machine, like the user itself
    (sshd reads the groups at each login); never removed, another run may rely on it."""
    add_deploy_user_to_group("www-data")


def env_array(shop: Shop) -> dict:
    out = shop.rig.hosts[0].sh(f"php -r 'echo json_encode(include \"{ENV_PHP}\");'",
                               user=shop.rig.user).stdout
    return json.loads(out)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize(("output", "version"), [
    ("Magento CLI 2.4.7", (2, 4, 7)), ("Magento CLI 2.4.3-p1", (2, 4, 3)),
    ("Magento CLI UNKNOWN", None), ("", None)])
def test_parse_version(output: str, version: tuple[int, ...] | None) -> None:
    assert bluegreen.parse_version(output) == version


def test_the_script_sent_to_the_hosts_parses(tmp_path: Path) -> None:
    script = tmp_path / "set_flag.php"
    script.write_text(bluegreen._SET_FLAG)
    lint = subprocess.run(["php", "-l", str(script)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "?>" not in bluegreen._SET_FLAG, "a ?> even in a comment ends PHP mode"


def test_a_production_env_php_gets_one_line_and_keeps_every_other_byte(rig1, www_data) -> None:
    """No 'deployment' yet (Magento's own env.php has none): one line after ``return [``.
    The getenv() stays an expression, the comments stay, group www-data and 0640 stay."""
    shop = Shop(rig1)
    web1 = rig1.hosts[0]
    file = put(web1, PRODUCTION, group="www-data", mode=0o640)
    [host] = shop.hosts()
    assert "DB_PASSWORD" not in host.output("env"), "the SSH session has no DB_PASSWORD"
    settings = shop.settings()
    assert bluegreen.check(host, settings) is True
    with temporary_files(file.parent) as seen:
        assert bluegreen.enable(host, settings) is True
    expected = PRODUCTION.replace("return [\n", f"return [\n    {FLAG}\n", 1)
    assert file.read_text() == expected
    assert "'password' => getenv('DB_PASSWORD'), // from the pool" in file.read_text()
    assert owner_group_mode(file) == (DEPLOY_USER, "www-data", "640")
    never_more_open(seen, "www-data", 0o640)
    # as the pool evaluates it: its own secret, and the flag
    pool = web1.sh(
        "DB_PASSWORD=s3cret php -r '$c = include \"" + ENV_PHP + "\"; echo json_encode("
        "[$c[\"db\"][\"connection\"][\"default\"][\"password\"], $c[\"deployment\"]]);'",
        user=DEPLOY_USER).stdout
    assert json.loads(pool) == ["s3cret", {"blue_green": {"enabled": True}}]
    before = fingerprint(file)
    assert bluegreen.check(host, settings) is False
    assert bluegreen.enable(host, settings) is False, "idempotent"
    assert fingerprint(file) == before, "the flag on: not written again"


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_shape_gets_only_its_line_or_token(rig1, shape: str) -> None:
    original, expected = SHAPES[shape]
    shop = Shop(rig1)
    file = put(rig1.hosts[0], original, mode=0o600)
    [host] = shop.hosts()
    with temporary_files(file.parent) as seen:
        assert bluegreen.enable(host, shop.settings()) is True
    assert file.read_bytes() == expected.encode()
    assert owner_group_mode(file) == (DEPLOY_USER, DEPLOY_USER, "600")
    never_more_open(seen, DEPLOY_USER, 0o600)
    before = fingerprint(file)
    assert bluegreen.enable(host, shop.settings()) is False
    assert fingerprint(file) == before


def test_the_flag_already_on_is_not_written(rig1) -> None:
    """Whatever the shape: a file the deploy would refuse is fine once the operator has
    added the flag by hand."""
    shop = Shop(rig1)
    web1 = rig1.hosts[0]
    [host] = shop.hosts()
    settings = shop.settings()
    file = put(web1, "<?php\n// on since 2.4.6\nreturn ['deployment' => ['blue_green' => "
               "['enabled' => true]], 'MAGE_MODE' => 'production'];\n")
    before = fingerprint(file)
    with temporary_files(file.parent):
        assert bluegreen.enable(host, settings) is False
    assert fingerprint(file) == before
    put(web1, "<?php\n$env = include __DIR__ . '/env.base.php';\n"
        "$env['deployment']['blue_green']['enabled'] = true;\nreturn $env;\n")
    base = put(web1, "<?php\nreturn ['MAGE_MODE' => 'production'];\n", f"{ETC}/env.base.php")
    before = fingerprint(file), fingerprint(base)
    with temporary_files(file.parent):
        assert bluegreen.enable(host, settings) is False
    assert (fingerprint(file), fingerprint(base)) == before


def test_an_env_php_that_includes_another_file_is_refused_with_the_line_to_add(rig1) -> None:
    shop = Shop(rig1)
    web1 = rig1.hosts[0]
    file = put(web1, "<?php\n// secrets live in env.local.php (not in git)\n"
               "$env = include __DIR__ . '/env.local.php';\n"
               "$env['MAGE_MODE'] = 'production';\nreturn $env;\n")
    put(web1, "<?php\nreturn ['db' => ['connection' => []]];\n", f"{ETC}/env.local.php")
    [host] = shop.hosts()
    before = fingerprint(file)
    with temporary_files(file.parent), pytest.raises(bluegreen.EnvPhpRefused) as refused:
        bluegreen.enable(host, shop.settings())
    message = str(refused.value)
    assert message.startswith(f"[web1] blue/green: deployment/blue_green/enabled cannot be "
                              f"set safely in {ENV_PHP}: it runs code before its `return [`")
    assert "Nothing was changed." in message and ADD_BY_HAND in message, message
    assert fingerprint(file) == before
    with pytest.raises(bluegreen.EnvPhpRefused):
        bluegreen.check(host, shop.settings())


@pytest.mark.parametrize(("text", "why", "line"), [
    ("<?php\nreturn ['deployment' => ['blue_green' => ['enabled' => (bool) getenv('BG')]]];\n",
     "'enabled' is computed by an expression", "'enabled' => true,"),
    ("<?php\nreturn array_replace(['MAGE_MODE' => 'production'], ['x' => 1]);\n",
     "it does not return an array literal", FLAG),
    ("<?php\nreturn ['deployment' => [], 'deployment' => ['x' => 1]];\n",
     "'deployment' is set more than once", "'blue_green' => ['enabled' => true],"),
    ("<?php\nreturn [\\Magento\\Framework\\Config\\File\\ConfigFilePool::APP_ENV => []];\n",
     "PHP could not evaluate it here (Error: Class ", FLAG),
    ("<?php\nreturn ['MAGE_MODE' => 'production', 'path' => __FILE__];\n",
     "the edited text would not give the same settings plus the flag: it would differ at path",
     FLAG),
])
def test_shapes_that_do_not_allow_a_safe_edit_are_refused(rig1, text: str, why: str,
                                                          line: str) -> None:
    shop = Shop(rig1)
    file = put(rig1.hosts[0], text)
    [host] = shop.hosts()
    before = fingerprint(file)
    with temporary_files(file.parent), pytest.raises(bluegreen.EnvPhpRefused) as refused:
        bluegreen.enable(host, shop.settings())
    message = str(refused.value)
    assert f"in {ENV_PHP}: {why}" in message and f":\n    {line}\n" in message, message
    assert fingerprint(file) == before


def test_a_symlinked_env_php_is_edited_where_it_points(rig1, www_data) -> None:
    """shared/app/etc/env.php -> /srv/config/env.php (the operator's): the target gets the
    edit with its owner, group and mode; the link stays as it was."""
    shop = Shop(rig1)
    web1 = rig1.hosts[0]
    config = web1.inside("/srv/config")
    config.mkdir(mode=0o750)
    os.chown(config, pwd.getpwnam(DEPLOY_USER).pw_uid, grp.getgrnam("www-data").gr_gid)
    target = put(web1, PRODUCTION, "/srv/config/env.php", group="www-data", mode=0o640)
    link = web1.inside(ENV_PHP)
    link.unlink()
    link.symlink_to("/srv/config/env.php")
    [host] = shop.hosts()
    with temporary_files(config) as seen, temporary_files(link.parent):
        assert bluegreen.enable(host, shop.settings()) is True
    assert target.read_text() == PRODUCTION.replace("return [\n", f"return [\n    {FLAG}\n", 1)
    assert owner_group_mode(target) == (DEPLOY_USER, "www-data", "640")
    never_more_open(seen, "www-data", 0o640)
    assert link.is_symlink() and os.readlink(link) == "/srv/config/env.php"


def test_a_symlink_into_a_directory_the_deploy_user_cannot_write_is_refused(rig1) -> None:
    shop = Shop(rig1)
    web1 = rig1.hosts[0]
    web1.inside("/srv/config").mkdir(mode=0o755)  # root's
    target = put(web1, PRODUCTION, "/srv/config/env.php")
    link = web1.inside(ENV_PHP)
    link.unlink()
    link.symlink_to("/srv/config/env.php")
    [host] = shop.hosts()
    before = fingerprint(target)
    with pytest.raises(bluegreen.EnvPhpRefused) as refused:
        bluegreen.enable(host, shop.settings())
    message = str(refused.value)
    assert (f"in {ENV_PHP} (-> /srv/config/env.php): the deploy user cannot create a file in "
            "/srv/config") in message, message
    assert ADD_BY_HAND in message
    assert fingerprint(target) == before
    assert sorted(os.listdir(web1.inside("/srv/config"))) == ["env.php"]


def test_an_owner_or_group_the_edited_file_could_not_keep_is_refused(rig1, www_data) -> None:
    shop = Shop(rig1)
    web1 = rig1.hosts[0]
    [host] = shop.hosts()
    for owner, group, why in [
        (DEPLOY_USER, "nogroup", f"its group is nogroup and the deploy user ({DEPLOY_USER}) is "
                                 f"not a member: the edited file could not keep that group "
                                 f"(usermod -aG nogroup {DEPLOY_USER}, then a new SSH login)"),
        ("root", "www-data", f"it belongs to root: a file the deploy user ({DEPLOY_USER}) "
                             "writes cannot keep that owner"),
    ]:
        file = put(web1, PRODUCTION, owner=owner, group=group, mode=0o660)
        before = fingerprint(file)
        with temporary_files(file.parent), pytest.raises(bluegreen.EnvPhpRefused) as refused:
            bluegreen.enable(host, shop.settings())
        assert f"{ENV_PHP}: {why}. Nothing was changed." in str(refused.value), refused.value
        assert fingerprint(file) == before


def test_an_edit_that_reads_differently_in_place_is_put_back(rig1) -> None:
    """The check after the rename fails: the original inode is renamed back. Staged with a
    value that changes at the third evaluation in one PHP process (the original, the
    temporary file, the file in place): no real env.php does that, a concurrent writer or a
    stale OPcache in the CLI would."""
    shop = Shop(rig1)
    text = ("<?php\nreturn [\n    'MAGE_MODE' => 'production',\n"
            "    'probe' => ($GLOBALS['n'] = ($GLOBALS['n'] ?? 0) + 1) < 3,\n];\n")
    file = put(rig1.hosts[0], text)
    [host] = shop.hosts()
    content, inode, _, meta = fingerprint(file)
    with temporary_files(file.parent), pytest.raises(bluegreen.EnvPhpRefused) as refused:
        bluegreen.enable(host, shop.settings())
    message = str(refused.value)
    assert (f"{ENV_PHP}: evaluated in place, it would differ at probe. The edited file had "
            "been written: the original was put back, nothing changed.") in message, message
    assert (file.read_bytes(), file.stat().st_ino, owner_group_mode(file)) == (content, inode,
                                                                              meta)


def test_a_blue_green_deploy_flips_one_token_of_a_production_env_php(rig1, www_data) -> None:
    """Through the deploy: the fake shop's own env.php as ops would keep it (a comment, the
    password from the pool, group www-data 0640); the schema release goes through
    blue/green and the file differs from the original by ``false`` -> ``true`` only."""
    shop = Shop(rig1)
    web1 = rig1.hosts[0]
    file = web1.inside(ENV_PHP)
    generated = file.read_text()
    assert "'password' => ''," in generated and "'enabled' => false" in generated
    original = generated.replace(
        "<?php\n", "<?php\n// shop.test: kept by ops; secrets from the PHP-FPM pool\n", 1,
    ).replace("'password' => '',", "'password' => getenv('DB_PASSWORD'), // pool env", 1)
    put(web1, original, group="www-data", mode=0o640)
    live = shop.deploy().release
    shop.commit(label="v2", modules={"Shop_Catalog": "1.1.0"})
    summary = shop.deploy(upgrade_mode="blue-green", opcache="command", opcache_command="true")
    assert summary.path == "blue-green" and summary.release != live
    assert file.read_text() == original.replace("'enabled' => false", "'enabled' => true", 1)
    assert owner_group_mode(file) == (DEPLOY_USER, "www-data", "640")
    assert sorted(os.listdir(file.parent)) == ["env.php"]
    assert shop.commands(web1).count("setup:upgrade") == 1


def test_a_deploy_whose_env_php_cannot_be_edited_stops_before_the_build(rig1) -> None:
    shop = Shop(rig1)
    web1 = rig1.hosts[0]
    file = web1.inside(ENV_PHP)
    put(web1, file.read_text(), f"{ETC}/env.base.php")
    put(web1, "<?php\nreturn array_replace_recursive(include __DIR__ . '/env.base.php', "
        "['MAGE_MODE' => 'production']);\n")
    live = shop.deploy().release
    shop.commit(label="v2", modules={"Shop_Catalog": "1.1.0"})
    before = fingerprint(file)
    with pytest.raises(DeployError) as stopped:
        shop.deploy(upgrade_mode="blue-green", opcache="command", opcache_command="true")
    message = str(stopped.value)
    assert f"[web1] blue/green: deployment/blue_green/enabled cannot be set safely in {ENV_PHP}: " \
           "it does not return an array literal" in message, message
    assert "in its 'deployment' => ['blue_green' => [...]] array, set:\n    'enabled' => true," \
        in message, "the base file has 'enabled' => false: the line to change is named"
    assert fingerprint(file) == before
    assert shop.live(web1) == live and shop.releases(web1) == [live]  # nothing built
    assert "setup:upgrade" not in shop.commands(web1)


def test_a_live_release_older_than_2_4_4_is_refused_before_anything_changes(rig1) -> None:
    shop = Shop(rig1)
    composer = json.loads((shop.repo / "composer.json").read_text())
    shop.commit(files={"composer.json": json.dumps({**composer, "version": "2.4.3-p1"})})
    live = shop.deploy().release
    shop.commit(label="v2", modules={"Shop_Catalog": "1.1.0"})
    with pytest.raises(DeployError) as refused:
        shop.deploy(upgrade_mode="blue-green")
    message = str(refused.value)
    assert f"release {live} is 'Magento CLI 2.4.3-p1'" in message, message
    assert "from 2.4.4" in message and "[web1]" in message
    [host] = rig1.hosts
    assert shop.live(host) == live and shop.releases(host) == [live]
    assert [c for c in shop.commands(host) if c == "setup:upgrade"] == []
    assert env_array(shop)["deployment"]["blue_green"]["enabled"] is False


def test_without_an_opcache_flush_the_flag_cannot_take_effect(rig1) -> None:
    """DEPLOY_OPCACHE=none: PHP-FPM would keep the env.php it compiled, so the deploy stops
    before the database work (the flag itself is harmless and stays)."""
    shop = Shop(rig1)
    live = shop.deploy().release
    shop.commit(label="v2", modules={"Shop_Catalog": "1.1.0"})
    with pytest.raises(DeployError) as stopped:
        shop.deploy(upgrade_mode="blue-green", opcache="none")
    assert "DEPLOY_OPCACHE=none cannot make PHP-FPM read it again" in str(stopped.value)
    [host] = rig1.hosts
    assert shop.live(host) == live
    assert [c for c in shop.commands(host) if c == "setup:upgrade"] == [], \
        "the database was not touched"
