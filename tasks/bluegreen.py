"""Magento's blue/green mode for schema releases (``DEPLOY_UPGRADE_MODE=blue-green``).

Since Magento 2.4.4, ``'deployment' => ['blue_green' => ['enabled' => true]]`` in
``env.php`` makes the storefront skip the two checks that refuse to run code against a
database it does not expect (``DbStatusValidator``, ``ConfigChangeDetector``). The live
release then keeps serving while ``setup:upgrade`` moves the database for the new one:
safe when the changes are additive (see docs/blue-green.md), no maintenance window.

The flag is set by a textual edit of the shared ``env.php`` (never by re-writing it from
its evaluated array, which is what Magento's own config writer does: a
``getenv('DB_PASSWORD')`` would become the literal the SSH session saw, and comments
would vanish). The host's PHP tokenizes the file (``token_get_all``, so strings and
comments cannot fool the edit) and changes only what it must:

* the flag is already ``true`` as PHP evaluates the file: nothing is written;
* ``'enabled' => false`` (any literal: ``FALSE``, ``0``, ``'0'``, ``null``): that one
  token becomes ``true``;
* ``'blue_green' => [...]`` without ``'enabled'``, ``'deployment' => [...]`` without
  ``'blue_green'``, no ``'deployment'`` at all: one element is inserted first in that
  array (its own line, indented like the next one, when the array spans lines), in the
  array's own syntax (``[...]`` or ``array(...)``);
* anything else is refused before anything changes, naming the host, the file, why, and
  the exact line to add by hand: a file that is not ``<?php return [...];`` (it includes
  another file, builds its array in variables...), keys that are not plain strings,
  ``'deployment'`` twice, a flag computed by an expression, a file whose owner or group
  the deploy user could not give the edited file, a file with other hard links, a
  directory the deploy user cannot write, a file the CLI cannot evaluate.

The edited text is written to a temporary file next to the file (the real file when
``env.php`` is a symlink: the link stays), created owner-only, given the original's
owner, group and mode, fsynced; ``php -l`` must accept it and, evaluated in the same PHP
process that evaluated the original, it must give the original array plus the flag
(``var_export`` equal, key order included). Then it is renamed over the file, which is
checked again in place (owner, group, mode, bytes, ``php -l``, the array); if that fails
the original (kept as a hard link) is renamed back. No temporary file survives any
outcome, a PHP fatal error included (shutdown function).

``env.php`` is PHP, cached by OPcache: after setting the flag every pool must be flushed,
or the old release keeps reading the file it compiled before.
"""

from __future__ import annotations

import json
import re

from .build import in_release
from .hosts import Host, StepFailed, q
from .redact import redact
from .settings import Settings, SettingsError

#: The first Magento version whose storefront honours the flag.
SINCE = (2, 4, 4)
ENV_PHP = "app/etc/env.php"
STEP = "blue-green flag"
#: Marks the one line of the script's output that is its answer (JSON).
MARK = "@blue-green@ "

#: What to add by hand, by what the evaluated env.php already has.
LINES_TO_ADD = {
    "top": ("in the array it returns (`return [`), add the line",
            "'deployment' => ['blue_green' => ['enabled' => true]],"),
    "deployment": ("in its 'deployment' array, add the line",
                   "'blue_green' => ['enabled' => true],"),
    "blue_green": ("in its 'deployment' => ['blue_green' => [...]] array, set",
                   "'enabled' => true,"),
}

# Runs on the host as `php -- FILE check|apply` with this script on stdin. `check` looks
# and changes nothing; `apply` edits. The last line printed is MARK + JSON:
# {"result": changed|unchanged|would-change|refused|restored|failed, "why", "file" (links
# resolved), "where" (top|deployment|blue_green: what the evaluated file has), "kept"}.
_SET_FLAG = r"""<?php
error_reporting(E_ALL);
@ini_set('opcache.enable', '0');  // include must compile the file on disk, never a cache
$GLOBALS['bg'] = ['error' => '', 'done' => false, 'file' => null, 'where' => null];
set_error_handler(static function (int $no, string $message): bool {
    $GLOBALS['bg']['error'] = $message;  // the shop's own notices are not printed
    return true;
});

final class Stop extends Exception
{
    public $result;
    public $extra;

    public function __construct(string $result, string $why, array $extra = [])
    {
        parent::__construct($why);
        [$this->result, $this->extra] = [$result, $extra];
    }
}

final class Retry extends Exception
{
}

function refuse(string $why): void
{
    throw new Stop('refused', $why);
}

function out(array $answer): void
{
    $answer += ['file' => $GLOBALS['bg']['file'], 'where' => $GLOBALS['bg']['where']];
    $json = json_encode($answer, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE);
    echo "\n@blue-green@ $json\n";
    $GLOBALS['bg']['done'] = true;
}

// Temporary files and the saved original: put back / removed however the script ends.
// Returns false when a replaced original could not be put back (it is then kept).
function tidy(array &$work): bool
{
    $ok = true;
    if ($work['swapped']) {
        $ok = @rename($work['old'], $work['file']);
        $work['swapped'] = false;
        if (!$ok) {
            $work['kept'] = $work['old'];
            $work['old'] = null;  // the only copy of the original: never removed
        }
    }
    foreach (['tmp', 'old'] as $name) {
        if ($work[$name] !== null) {
            @unlink($work[$name]);
            $work[$name] = null;
        }
    }
    return $ok;
}

function evaluate(string $file)
{
    ob_start();
    try {
        return (static fn () => include $file)();
    } finally {
        ob_end_clean();
    }
}

function export($value): string
{
    try {
        return var_export($value, true);
    } catch (Throwable $e) {
        return serialize($value);
    }
}

// Key paths where two arrays differ (never values: env.php holds secrets).
function diff_paths($a, $b, string $at): array
{
    if (!is_array($a) || !is_array($b)) {
        return export($a) === export($b) ? [] : [$at === '' ? 'the whole array' : $at];
    }
    $paths = [];
    foreach (array_keys($a + $b) as $key) {
        $path = $at === '' ? (string) $key : "$at/$key";
        if (!array_key_exists($key, $a) || !array_key_exists($key, $b)) {
            $paths[] = $path;
        } else {
            $paths = array_merge($paths, diff_paths($a[$key], $b[$key], $path));
        }
    }
    if (!$paths && array_keys($a) !== array_keys($b)) {
        $paths[] = $at === '' ? 'the order of its keys' : "the order of the keys of $at";
    }
    return $paths;
}

function differs(array $expected, $actual): ?string
{
    if (export($expected) === export($actual)) {
        return null;
    }
    $paths = array_slice(diff_paths($expected, $actual, ''), 0, 5);
    return 'it would differ at ' . implode(', ', $paths);
}

function lint(string $file): ?string
{
    if (PHP_BINARY !== '' && function_exists('exec')) {
        $lines = [];
        $status = 1;
        $command = escapeshellarg(PHP_BINARY) . ' -n -l ' . escapeshellarg($file) . ' 2>&1';
        @exec($command, $lines, $status);
        $said = str_replace($file, basename($file), implode(' ', $lines));
        return $status === 0 ? null : trim($said);
    }
    try {
        token_get_all((string) file_get_contents($file), TOKEN_PARSE);
        return null;
    } catch (Throwable $e) {
        return $e->getMessage();
    }
}

// ---------------------------------------------------------------- reading the text

function tokens(string $text): array
{
    $tokens = [];
    $at = 0;
    foreach (token_get_all($text) as $token) {
        [$id, $s] = is_array($token) ? [$token[0], $token[1]] : [null, $token];
        $tokens[] = ['id' => $id, 's' => $s, 'at' => $at];
        $at += strlen($s);
    }
    return $tokens;
}

// A token id PHP 7.4 does not have (T_ATTRIBUTE, T_NAME_*) is -1 there.
function token_id(string $name): int
{
    return defined($name) ? constant($name) : -1;
}

function trivia(array $token): bool
{
    return in_array($token['id'], [T_WHITESPACE, T_COMMENT, T_DOC_COMMENT], true);
}

function next_sig(array $tk, int $from): ?int
{
    for ($i = $from; $i < count($tk); $i++) {
        if (!trivia($tk[$i])) {
            return $i;
        }
    }
    return null;
}

function significant(array $tk, int $from, int $to): array
{
    $found = [];
    for ($i = $from; $i < $to; $i++) {
        if (!trivia($tk[$i])) {
            $found[] = $i;
        }
    }
    return $found;
}

// The array literal starting at token $i ('[' or `array`): its brackets and its items
// (token ranges [from, to) and the index of their `=>`, if any), or null.
function parse_array(array $tk, int $i): ?array
{
    if ($tk[$i]['s'] === '[') {
        [$open, $close, $syntax] = [$i, ']', 'short'];
    } elseif ($tk[$i]['id'] === T_ARRAY) {
        $open = next_sig($tk, $i + 1);
        if ($open === null || $tk[$open]['s'] !== '(') {
            return null;
        }
        [$close, $syntax] = [')', 'long'];
    } else {
        return null;
    }
    $items = [];
    $depth = 0;
    $from = $open + 1;
    $arrow = null;
    $openers = [T_CURLY_OPEN, T_DOLLAR_OPEN_CURLY_BRACES, token_id('T_ATTRIBUTE')];
    for ($p = $open + 1; $p < count($tk); $p++) {
        $s = $tk[$p]['s'];
        if ($depth === 0 && ($s === $close || $s === ',')) {
            if (significant($tk, $from, $p)) {
                $items[] = ['from' => $from, 'to' => $p, 'arrow' => $arrow];
            }
            if ($s === $close) {
                return ['open' => $open, 'close' => $p, 'syntax' => $syntax, 'items' => $items];
            }
            [$from, $arrow] = [$p + 1, null];
        } elseif (in_array($s, ['[', '(', '{'], true)
            || in_array($tk[$p]['id'], $openers, true)) {
            $depth++;
        } elseif (in_array($s, [']', ')', '}'], true)) {
            if (--$depth < 0) {
                return null;
            }
        } elseif ($depth === 0 && $arrow === null && $tk[$p]['id'] === T_DOUBLE_ARROW) {
            $arrow = $p;
        }
    }
    return null;
}

// The array env.php returns, if the file is exactly `<?php return [...];` (comments and
// whitespace anywhere, a closing tag at the end): only then does an edit of that literal reach
// the array Magento reads, and nothing else runs.
function top_array(array $tk): array
{
    if (!$tk || $tk[0]['id'] !== T_OPEN_TAG || trim($tk[0]['s']) !== '<?php') {
        refuse('it does not start with `<?php` (text or a byte order mark before it?)');
    }
    $i = next_sig($tk, 1);
    if ($i === null || $tk[$i]['id'] !== T_RETURN) {
        refuse('it runs code before its `return [` (it includes another file, builds its array '
            . 'in variables...): an edit could miss the array Magento reads');
    }
    $j = next_sig($tk, $i + 1);
    $array = $j === null ? null : parse_array($tk, $j);
    if ($array === null) {
        refuse('it does not return an array literal (`return [...]` or `return array(...)`): '
            . 'the array is computed, an edit could miss it');
    }
    $k = next_sig($tk, $array['close'] + 1);
    if ($k === null || $tk[$k]['s'] !== ';') {
        refuse('its return is more than an array literal (something is added to it)');
    }
    $m = next_sig($tk, $k + 1);
    if ($m !== null && !($tk[$m]['id'] === T_CLOSE_TAG && next_sig($tk, $m + 1) === null)) {
        refuse('there is more after its `return [...];`');
    }
    return $array;
}

function item_key(array $tk, array $item): array
{
    if ($item['arrow'] === null) {  // a positional value: an integer key, unless ...$spread
        return [$tk[significant($tk, $item['from'], $item['to'])[0]]['id'] !== T_ELLIPSIS, null];
    }
    $key = significant($tk, $item['from'], $item['arrow']);
    $literals = [T_CONSTANT_ENCAPSED_STRING, T_LNUMBER];
    if (count($key) === 1 && in_array($tk[$key[0]]['id'], $literals, true)) {
        return [true, eval('return ' . $tk[$key[0]]['s'] . ';')];  // a literal, nothing to run
    }
    return [false, null];
}

// The one item of $array whose key is $name (null when none); refuses when keys are not
// literals (which keys the array has is then known only at run time) or $name repeats.
function member(array $tk, array $array, string $name, string $in): ?array
{
    $found = [];
    foreach ($array['items'] as $item) {
        [$literal, $key] = item_key($tk, $item);
        if (!$literal) {
            refuse("a key of $in is not a plain string or number (a constant, an expression or "
                . 'a ...spread): which keys it sets is known only at run time');
        }
        if ($key === $name) {
            $found[] = $item;
        }
    }
    if (count($found) > 1) {
        refuse("'$name' is set more than once in $in");
    }
    return $found[0] ?? null;
}

function array_value(array $tk, array $item, string $what): array
{
    $value = significant($tk, $item['arrow'] + 1, $item['to']);
    $array = $value ? parse_array($tk, $value[0]) : null;
    if ($array === null || $array['close'] !== end($value)) {
        refuse("$what is not written as an array literal ([...] or array(...))");
    }
    return $array;
}

function literal(string $syntax, string $inner): string
{
    return $syntax === 'long' ? "array($inner)" : "[$inner]";
}

function indent_of(string $text, int $at): string
{
    $start = strrpos(substr($text, 0, $at), "\n");
    $start = $start === false ? 0 : $start + 1;
    preg_match('/^[ \t]*/', substr($text, $start, $at - $start), $m);
    return $m[0];
}

// $element inserted as the first item of $array: on a line of its own after the line of
// the opening bracket when the array spans lines (indented like the item that follows),
// else right before the first item.
function insert_first(string $text, array $tk, array $array, string $element): string
{
    $first = next_sig($tk, $array['open'] + 1);  // the first item, or the closing bracket
    for ($p = $array['open'] + 1; $p < $first; $p++) {
        // PHP 8 ends a `//` or `#` comment before its newline, PHP 7 after it
        [$id, $s] = [$tk[$p]['id'], $tk[$p]['s']];
        $nl = in_array($id, [T_WHITESPACE, T_COMMENT], true) ? strpos($s, "\n") : false;
        if ($nl !== false && ($id === T_WHITESPACE || $nl === strlen($s) - 1)) {
            $at = $tk[$p]['at'] + $nl + 1;
            $eol = $nl > 0 && $tk[$p]['s'][$nl - 1] === "\r" ? "\r\n" : "\n";
            $indent = indent_of($text, $tk[$first]['at']);
            if ($first === $array['close']) {
                $indent .= strpos($indent, "\t") !== false ? "\t" : '    ';
            }
            return substr_replace($text, "$indent$element,$eol", $at, 0);
        }
    }
    $element .= $first === $array['close'] ? '' : ', ';
    return substr_replace($text, $element, $tk[$first]['at'], 0);
}

function is_literal(array $token): bool
{
    if (in_array($token['id'], [T_LNUMBER, T_DNUMBER, T_CONSTANT_ENCAPSED_STRING], true)) {
        return true;
    }
    return in_array($token['id'], [T_STRING, token_id('T_NAME_FULLY_QUALIFIED')], true)
        && in_array(strtolower(ltrim($token['s'], '\\')), ['true', 'false', 'null'], true);
}

// [the edited text, the array it must evaluate to]; refuses when the shape does not allow
// a safe edit.
function edit(string $text, array $before): array
{
    $tk = tokens($text);
    $top = top_array($tk);
    $on = ['enabled' => true];
    $deployment = member($tk, $top, 'deployment', 'the array it returns');
    if ($deployment === null) {
        $syntax = $top['syntax'];
        $flag = literal($syntax, "'blue_green' => " . literal($syntax, "'enabled' => true"));
        return [insert_first($text, $tk, $top, "'deployment' => $flag"),
                ['deployment' => ['blue_green' => $on]] + $before];
    }
    $deploymentArray = array_value($tk, $deployment, "'deployment'");
    $blueGreen = member($tk, $deploymentArray, 'blue_green', "'deployment'");
    $expected = $before;
    if (!is_array($before['deployment'] ?? null)) {
        refuse("'deployment' is not an array when PHP evaluates it");
    }
    if ($blueGreen === null) {
        $expected['deployment'] = ['blue_green' => $on] + $before['deployment'];
        $flag = literal($deploymentArray['syntax'], "'enabled' => true");
        return [insert_first($text, $tk, $deploymentArray, "'blue_green' => $flag"), $expected];
    }
    $blueGreenArray = array_value($tk, $blueGreen, "'deployment' => ['blue_green' => ...]");
    if (!is_array($before['deployment']['blue_green'] ?? null)) {
        refuse("'blue_green' is not an array when PHP evaluates it");
    }
    $enabled = member($tk, $blueGreenArray, 'enabled', "'blue_green'");
    if ($enabled === null) {
        $expected['deployment']['blue_green'] = $on + $before['deployment']['blue_green'];
        return [insert_first($text, $tk, $blueGreenArray, "'enabled' => true"), $expected];
    }
    $value = significant($tk, $enabled['arrow'] + 1, $enabled['to']);
    if (count($value) !== 1 || !is_literal($tk[$value[0]])) {
        refuse("'enabled' is computed by an expression, not a literal true or false: its value "
            . 'is known only at run time, where it may differ from what this SSH session sees');
    }
    $token = $tk[$value[0]];
    $word = preg_match('/^\\\\?[A-Z]+$/', $token['s']) ? 'TRUE' : 'true';  // FALSE -> TRUE
    $expected['deployment']['blue_green']['enabled'] = true;
    return [substr_replace($text, $word, $token['at'], strlen($token['s'])), $expected];
}

// ---------------------------------------------------------------- writing

function user_name(int $uid): string
{
    $entry = function_exists('posix_getpwuid') ? posix_getpwuid($uid) : false;
    return $entry['name'] ?? "uid $uid";
}

function group_name(int $gid): string
{
    $entry = function_exists('posix_getgrgid') ? posix_getgrgid($gid) : false;
    return $entry['name'] ?? "gid $gid";
}

// Could a file the deploy user writes in the same directory replace $file with the same
// owner, group and mode?
function can_replace(string $file, array $st): void
{
    $dir = dirname($file);
    if ($st['nlink'] > 1) {
        refuse("it has {$st['nlink']} hard links: the other names would keep the old settings");
    }
    if (!is_writable($dir)) {
        refuse("the deploy user cannot create a file in $dir, where the edited file is written "
            . 'before it replaces the old one');
    }
    if (!function_exists('posix_geteuid') || posix_geteuid() === 0) {
        return;  // write_like() checks what it got
    }
    $me = user_name(posix_geteuid());
    if ($st['uid'] !== posix_geteuid()) {
        refuse('it belongs to ' . user_name($st['uid']) . ": a file the deploy user ($me) "
            . 'writes cannot keep that owner');
    }
    if ($st['gid'] !== posix_getegid() && !in_array($st['gid'], posix_getgroups() ?: [], true)) {
        $group = group_name($st['gid']);
        refuse("its group is $group and the deploy user ($me) is not a member: the edited file "
            . "could not keep that group (usermod -aG $group $me, then a new SSH login)");
    }
}

// $bytes in a new file $path (which must not exist), owner-only from its creation, then
// given the owner, group and mode of $st, fsynced.
function write_like(string $path, string $bytes, array $st): void
{
    $umask = umask(0077);
    $h = @fopen($path, 'xb');
    umask($umask);
    if ($h === false) {
        refuse('cannot create ' . basename($path) . ' in ' . dirname($path) . ': '
            . $GLOBALS['bg']['error']);
    }
    $ok = fwrite($h, $bytes) === strlen($bytes) && fflush($h);
    clearstatcache(true, $path);
    $now = stat($path);
    if ($ok && $now['uid'] !== $st['uid']) {
        $ok = @chown($path, $st['uid']);
    }
    if ($ok && $now['gid'] !== $st['gid']) {
        $ok = @chgrp($path, $st['gid']);
    }
    $ok = $ok && @chmod($path, $st['mode'] & 07777) && (!function_exists('fsync') || fsync($h));
    fclose($h);
    clearstatcache(true, $path);
    $now = stat($path);
    if (!$ok || $now['uid'] !== $st['uid'] || $now['gid'] !== $st['gid']
        || ($now['mode'] & 07777) !== ($st['mode'] & 07777)) {
        refuse(sprintf('the edited file could not be written with owner %s, group %s, '
            . 'mode %04o (%s)', user_name($st['uid']), group_name($st['gid']),
            $st['mode'] & 07777, $GLOBALS['bg']['error']));
    }
}

function fsync_dir(string $dir): void
{
    $h = @fopen($dir, 'r');
    if ($h !== false && function_exists('fsync')) {
        @fsync($h);
        fclose($h);
    }
}

// What is wrong with $file as it is now, after the rename; null when it is the edit.
function check_in_place(string $file, string $new, array $st, array $expected): ?string
{
    clearstatcache(true);
    if (function_exists('opcache_invalidate')) {
        @opcache_invalidate($file, true);
    }
    $now = @stat($file);
    if ($now === false) {
        return 'it was gone after the rename';
    }
    foreach (['uid' => 'owner', 'gid' => 'group'] as $key => $what) {
        if ($now[$key] !== $st[$key]) {
            return "its $what changed";
        }
    }
    if (($now['mode'] & 07777) !== ($st['mode'] & 07777)) {
        return 'its mode changed';
    }
    if (@file_get_contents($file) !== $new) {
        return 'it does not hold what was written';
    }
    if (($why = lint($file)) !== null) {
        return "php -l refused it: $why";
    }
    try {
        $after = evaluate($file);
    } catch (Throwable $e) {
        return 'PHP could not evaluate it (' . get_class($e) . ': ' . $e->getMessage() . ')';
    }
    $why = differs($expected, $after);
    return $why === null ? null : "evaluated in place, $why";
}

function run(string $path, bool $apply, array &$work): array
{
    clearstatcache(true);
    if ($path === '' || !file_exists($path)) {
        throw new Stop('failed', 'it does not exist');
    }
    $file = $GLOBALS['bg']['file'] = realpath($path);
    if (!is_file($file)) {
        refuse('it is not a regular file');
    }
    $text = @file_get_contents($file);
    if ($text === false) {
        refuse('the deploy user cannot read it');
    }
    try {
        $before = evaluate($file);
    } catch (Throwable $e) {
        refuse('PHP could not evaluate it here (' . get_class($e) . ': ' . $e->getMessage() . ')');
    }
    if (!is_array($before)) {
        refuse('it does not return an array');
    }
    $deployment = $before['deployment'] ?? null;
    $GLOBALS['bg']['where'] = !is_array($deployment) ? 'top'
        : (is_array($deployment['blue_green'] ?? null) ? 'blue_green' : 'deployment');
    if (($before['deployment']['blue_green']['enabled'] ?? null) === true) {
        return ['result' => 'unchanged'];
    }
    [$new, $expected] = edit($text, $before);
    $st = stat($file);
    can_replace($file, $st);
    if (!$apply) {
        return ['result' => 'would-change'];
    }
    $dir = dirname($file);
    $unique = getmypid() . '.' . bin2hex(random_bytes(4));
    $name = "$dir/." . basename($file) . ".blue-green.$unique";
    $work['file'] = $file;
    $work['tmp'] = "$name.new";
    write_like($work['tmp'], $new, $st);
    if (($why = lint($work['tmp'])) !== null) {
        refuse("the edited text does not parse (php -l: $why)");
    }
    try {
        $after = evaluate($work['tmp']);
    } catch (Throwable $e) {
        refuse('PHP could not evaluate the edited text (' . get_class($e) . ': '
            . $e->getMessage() . ')');
    }
    if (($why = differs($expected, $after)) !== null) {
        refuse("the edited text would not give the same settings plus the flag: $why");
    }
    // The original, kept under another name (the same inode) until the edit is checked.
    $work['old'] = "$name.old";
    if (!@link($file, $work['old'])) {
        write_like($work['old'], $text, $st);
    }
    if (@file_get_contents($work['old']) !== $text) {
        throw new Retry();  // changed since it was read: read it again
    }
    if (!@rename($work['tmp'], $file)) {
        refuse('cannot rename the edited file over it: ' . $GLOBALS['bg']['error']);
    }
    [$work['tmp'], $work['swapped']] = [null, true];
    fsync_dir($dir);
    $problem = check_in_place($file, $new, $st, $expected);
    if ($problem === null) {
        $work['swapped'] = false;
        tidy($work);
        fsync_dir($dir);
        return ['result' => 'changed'];
    }
    if (tidy($work)) {
        fsync_dir($dir);
        throw new Stop('restored', $problem);
    }
    throw new Stop('failed', "$problem, and the original could not be put back ("
        . $GLOBALS['bg']['error'] . ')', ['kept' => $work['kept']]);
}

$work = ['file' => null, 'tmp' => null, 'old' => null, 'swapped' => false, 'kept' => null];
register_shutdown_function(static function () use (&$work): void {
    $restored = tidy($work);
    if (!$GLOBALS['bg']['done']) {  // PHP stopped (a fatal error in the shop's file?)
        $e = error_get_last();
        $why = 'PHP stopped: ' . ($e['message'] ?? 'exit')
            . ($restored ? '' : ', and the original could not be put back');
        out(['result' => $restored ? 'refused' : 'failed', 'kept' => $work['kept'], 'why' => $why]);
    }
});
try {
    for ($try = 1; ; $try++) {
        try {
            $answer = run($argv[1] ?? '', ($argv[2] ?? '') === 'apply', $work);
            break;
        } catch (Retry $e) {
            tidy($work);
            if ($try === 3) {
                refuse('it kept changing while it was being edited (another deploy?)');
            }
        }
    }
} catch (Stop $e) {
    $answer = ['result' => $e->result, 'why' => $e->getMessage()] + $e->extra;
}
out($answer);
"""


class EnvPhpRefused(StepFailed):
    """The flag could not be set safely in a host's ``env.php``. Nothing changed (the
    original is in place, put back if the edit had been written), unless ``kept`` names
    where the original is because it could not be put back."""

    def __init__(self, host: str, command: str, path: str, answer: dict, exit_code: int | None):
        self.host, self.step, self.command = host, STEP, command
        self.exit_code, self.output, self.timed_out = exit_code, answer.get("why", ""), False
        self.path, self.file = path, answer.get("file") or path
        self.result, self.kept = answer.get("result"), answer.get("kept")
        self.lines = LINES_TO_ADD[answer.get("where") or "top"]
        named = path if self.file == path else f"{path} (-> {self.file})"
        if self.result == "restored":
            state = ("The edited file had been written: the original was put back, nothing "
                     "changed.")
        elif self.kept:
            state = (f"THE ORIGINAL COULD NOT BE PUT BACK: it is {self.kept}; restore it "
                     f"with: mv {q(self.kept)} {q(self.file)}")
        else:
            state = "Nothing was changed."
        how, line = self.lines
        RuntimeError.__init__(self, redact(
            f"[{host}] blue/green: deployment/blue_green/enabled cannot be set safely in "
            f"{named}: {self.output}. {state}\n"
            f"Add the flag by hand, {how}:\n    {line}\n"
            f"then deploy again (or use DEPLOY_UPGRADE_MODE=maintenance for this release)."))


def parse_version(output: str) -> tuple[int, ...] | None:
    """``Magento CLI 2.4.7-p3`` -> ``(2, 4, 7)``; None when there is no version."""
    match = re.search(r"\b(\d+)\.(\d+)\.(\d+)", output)
    return tuple(int(part) for part in match.groups()) if match else None


def check_version(host: Host, settings: Settings, release: str) -> str:
    """Refuse blue/green when ``release`` (the code that must keep serving) predates it."""
    out = host.run(in_release(settings, release, f"{settings.php} bin/magento --version"),
                   step="magento version", echo=False).stdout.strip()
    version = parse_version(out)
    if version is None or version < SINCE:
        raise SettingsError(
            f"DEPLOY_UPGRADE_MODE=blue-green: [{host.name}] release {release} is {out!r}; "
            f"Magento honours deployment/blue_green only from "
            f"{'.'.join(map(str, SINCE))}: use the maintenance mode for this release")
    return out


def env_php(settings: Settings) -> str:
    """The shared ``env.php`` every release links to."""
    if ENV_PHP not in settings.shared_files:
        raise SettingsError(f"DEPLOY_UPGRADE_MODE=blue-green sets the flag in the shared "
                            f"{ENV_PHP}: add it to DEPLOY_SHARED_FILES")
    return f"{settings.shared_dir}/{ENV_PHP}"


def _answer(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARK):
            try:
                answer = json.loads(line[len(MARK):])
            except ValueError:
                return None
            return answer if isinstance(answer, dict) and "result" in answer else None
    return None


def _flag(host: Host, settings: Settings, mode: str) -> str:
    path = env_php(settings)
    command = f"{settings.php} -- {q(path)} {mode}"
    result = host.run(command, step=STEP, warn=True, echo=False, stdin=_SET_FLAG)
    answer = _answer(result.stdout)
    if answer is None:
        raise StepFailed(host.name, STEP, command, result.exited, result.stdout + result.stderr)
    if answer["result"] in ("changed", "unchanged", "would-change"):
        return answer["result"]
    raise EnvPhpRefused(host.name, command, path, answer, result.exited)


def check(host: Host, settings: Settings) -> bool:
    """Could :func:`enable` set the flag on ``host``? True when it would change the file,
    False when the flag is already on; raises :class:`EnvPhpRefused` (with the line to
    add by hand) when it would refuse. Reads only."""
    return _flag(host, settings, "check") == "would-change"


def enable(host: Host, settings: Settings) -> bool:
    """Set the flag in the host's shared ``env.php``; True when the file changed.

    Raises :class:`EnvPhpRefused` when the file's shape does not allow a safe edit (see
    the module's docstring); the file is then as it was."""
    return _flag(host, settings, "apply") == "changed"
