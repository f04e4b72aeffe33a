<?php
/**
 * The cache as Magento's Cache\Manager sees it, on a file backend (think: Redis). Two
 * frontends like a real env.php: 'default' (every type but full_page) and 'page_cache'.
 *
 *  - storage dir: env.php cache/frontend/<fe>/backend_options/cache_dir, defaulting to
 *    <BP>/var/cache and <BP>/var/page_cache (Magento's file backend defaults);
 *  - id prefix: cache/frontend/<fe>/id_prefix, defaulting like Magento to the first 3 hex
 *    of md5(<BP>/app/etc/) + '_', so two releases WITHOUT an id_prefix in env.php do not
 *    see each other's entries;
 *  - clean(types) removes this prefix's entries of those types (cleaning by tag);
 *  - flush(types) wipes the whole storage of the frontends holding those types, every
 *    prefix included (Manager::flush() -> backend clean(ALL), e.g. Redis FLUSHDB);
 *  - cleanAll() is App\Cache::clean() without tags (what setup:di:compile calls): every
 *    frontend of the pool (default, page_cache, any other in env.php) is cleaned in mode
 *    ALL, which the TagScope('MAGE') decorator of app/etc/di.xml narrows to "entries
 *    tagged MAGE", a tag Cache\Core prefixes with the frontend's id_prefix. So: every
 *    entry of this prefix, of every type, in every frontend; other prefixes survive.
 * Entries are files named "<prefix><type>--<key>".
 */
declare(strict_types=1);

namespace FakeMagento;

final class Cache
{
    /** Cache types of a Magento 2.4.7 install, in `cache:status` order. */
    public const TYPES = [
        'config', 'layout', 'block_html', 'collections', 'reflection', 'db_ddl',
        'compiled_config', 'eav', 'customer_notification', 'config_integration',
        'config_integration_api', 'graphql_query_resolver_result', 'full_page',
        'config_webservice', 'translate',
    ];

    public function __construct(private readonly string $bp, private readonly DeploymentConfig $config)
    {
    }

    public function load(string $type, string $key): ?string
    {
        $file = $this->entry($type, $key);
        $value = is_file($file) ? @file_get_contents($file) : false;
        return $value === false ? null : $value;
    }

    public function save(string $type, string $key, string $value): void
    {
        $dir = $this->dir(self::frontendOf($type));
        if (!is_dir($dir) && @mkdir($dir, 0777, true)) {
            @chmod($dir, 0777);
        }
        @file_put_contents($this->entry($type, $key), $value, LOCK_EX);
    }

    /** @param string[] $types */
    public function clean(array $types): void
    {
        foreach ($types as $type) {
            $prefix = $this->prefix(self::frontendOf($type)) . $type . '--';
            $this->unlinkAll($this->dir(self::frontendOf($type)), $prefix);
        }
    }

    /** App\Cache::clean() with no tags: every frontend, this application's id prefix. */
    public function cleanAll(): void
    {
        foreach ($this->frontends() as $frontend) {
            $this->unlinkAll($this->dir($frontend), $this->prefix($frontend));
        }
    }

    /**
     * Frontend ids of Cache\Frontend\Pool: 'default', 'page_cache' (app/etc/di.xml) and
     * whatever env.php adds under cache/frontend.
     * @return string[]
     */
    public function frontends(): array
    {
        $configured = $this->config->get('cache/frontend');
        $ids = array_merge(['default', 'page_cache'], is_array($configured) ? array_keys($configured) : []);
        return array_values(array_unique(array_map('strval', $ids)));
    }

    /** @param string[] $types */
    public function flush(array $types): void
    {
        $frontends = array_unique(array_map([self::class, 'frontendOf'], $types));
        foreach ($frontends as $frontend) {
            $this->unlinkAll($this->dir($frontend), '');
        }
    }

    private function unlinkAll(string $dir, string $prefix): void
    {
        foreach (glob($dir . '/' . $prefix . '*', GLOB_NOSORT) ?: [] as $file) {
            if (is_file($file)) {
                @unlink($file);
            }
        }
    }

    private function entry(string $type, string $key): string
    {
        $frontend = self::frontendOf($type);
        $safeKey = preg_replace('/[^A-Za-z0-9_.-]/', '_', $key);
        return $this->dir($frontend) . '/' . $this->prefix($frontend) . $type . '--' . $safeKey;
    }

    public function dir(string $frontend): string
    {
        $dir = $this->config->get("cache/frontend/{$frontend}/backend_options/cache_dir");
        if (is_string($dir) && $dir !== '') {
            return $dir[0] === '/' ? $dir : $this->bp . '/' . $dir;
        }
        return $this->bp . ($frontend === 'page_cache' ? '/var/page_cache' : '/var/cache');
    }

    public function prefix(string $frontend): string
    {
        $prefix = $this->config->get("cache/frontend/{$frontend}/id_prefix");
        return is_string($prefix) && $prefix !== ''
            ? $prefix
            : substr(md5($this->bp . '/app/etc/'), 0, 3) . '_';
    }

    private static function frontendOf(string $type): string
    {
        return $type === 'full_page' ? 'page_cache' : 'default';
    }
}
