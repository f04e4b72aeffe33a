<?php
/**
 * Magento's system configuration ("stores configuration"), from the sources Magento wires:
 *
 *  - modular: config.xml defaults of the core modules the fake stands in for (DEFAULTS);
 *  - dynamic: the database table core_config_data (Config\App\Config\Source\
 *    RuntimeConfigSource): rows {config_id, scope, scope_id, path, value}, scope 'default'
 *    (scope_id 0), 'websites' or 'stores' (scope_id = website_id / store_id, resolved to
 *    the scope's code; an unknown id is Magento's "wasn't found" error);
 *  - initial: the 'system' section of app/etc/config.php merged with env.php's, env.php
 *    winning (InitialConfigSource over DeploymentConfig\Reader);
 *  - environment: CONFIG__<SCOPE>__<PATH> variables, read from $_ENV, i.e. only when PHP's
 *    variables_order contains "E" (EnvironmentConfigSource; php.ini-production has GPCS).
 *
 * config:show reads Magento_Config's `configShowSourceAggregated`: dynamic, initial,
 * environment, in that order, merged like ConfigSourceAggregated::get(): a source giving
 * a non-array replaces what came before (the database gives null for a path it lacks), an
 * empty array is skipped, arrays are merged with array_replace_recursive.
 * InitialConfigSource and EnvironmentConfigSource answer `?: []`, so a "0" or "" in
 * config.php/env.php for a leaf path does not override the database there (it does in a
 * section listing). No config.xml defaults in config:show.
 *
 * The storefront reads the `system` config type: modular + dynamic + initial, environment
 * variables applied, scope fallback (store <- website <- default, Store\Model\Config\
 * Processor\Fallback), cached in the 'config' cache type (like Magento, a direct database
 * change is not seen until that cache is cleaned), then placeholders ({{unsecure_base_url}},
 * {{secure_base_url}}, {{base_url}} = the request's own base URL).
 */
declare(strict_types=1);

namespace FakeMagento;

use FakeMagento\Exception\LocalizedException;

final class SystemConfig
{
    /**
     * config.xml defaults (Magento_Store's web section, Magento_Cms's web/default, the
     * cookie module's web/cookie). web/seo/use_rewrites has none: unset counts as off.
     */
    public const DEFAULTS = [
        'web' => [
            'url' => ['use_store' => '0', 'redirect_to_base' => '1'],
            'unsecure' => [
                'base_url' => '{{base_url}}',
                'base_web_url' => '{{unsecure_base_url}}',
                'base_link_url' => '{{unsecure_base_url}}',
            ],
            'secure' => [
                'base_url' => '{{unsecure_base_url}}',
                'base_web_url' => '{{secure_base_url}}',
                'base_link_url' => '{{secure_base_url}}',
                'use_in_frontend' => '0',
                'use_in_adminhtml' => '0',
                'offloader_header' => 'X-Forwarded-Proto',
            ],
            'default' => ['front' => 'cms', 'no_route' => 'cms/noroute/index'],
            'cookie' => ['cookie_lifetime' => '3600', 'cookie_httponly' => '1', 'cookie_restriction' => '0'],
        ],
        'general' => ['locale' => ['code' => 'en_US']],
    ];

    public function __construct(private readonly DeploymentConfig $config)
    {
    }

    // ------------------------------------------------------------------ config:show

    /**
     * configShowSourceAggregated->get($path), $path as ConfigPathResolver makes it:
     * "default[/section/group/field]", "websites/<code>[/...]", "stores/<code>[/...]".
     */
    public function showSource(array $db, string $path): mixed
    {
        $data = [];
        $sources = [
            fn () => self::byPath($this->runtime($db), $path),
            fn () => self::byPath(['system' => $this->initial()], 'system' . ($path !== '' ? '/' . $path : '')) ?: [],
            fn () => self::byPath(self::environment(), $path) ?: [],
        ];
        foreach ($sources as $source) {
            $value = $source();
            if (!is_array($value)) {
                $data = $value;
            } elseif ($value !== []) {
                $data = array_replace_recursive(is_array($data) ? $data : [], $value);
            }
        }
        return $data;
    }

    // ------------------------------------------------------------------ storefront

    /**
     * The effective configuration of the default scope and of the store view this request
     * runs (fallback applied, placeholders not yet), from the config cache when there (the
     * database is not read then, as in Magento).
     * @param callable(): array $db
     * @return array{default: array, store: array}
     */
    public function effective(Cache $cache, callable $db, array $server): array
    {
        $key = 'system_run_' . ($server['MAGE_RUN_TYPE'] ?? 'store') . '_' . ($server['MAGE_RUN_CODE'] ?? '');
        $cached = $cache->load('config', $key);
        $data = $cached !== null ? json_decode($cached, true) : null;
        if (is_array($data) && isset($data['default'], $data['store'])) {
            return $data;
        }
        $dbData = $db();
        $storeCode = $this->runStoreCode($server, $dbData);
        $all = array_replace_recursive(
            ['default' => self::DEFAULTS],
            $this->runtime($dbData),
            $this->initial(),
            self::environment()
        );
        $store = $this->scopes($dbData)['stores'][$storeCode] ?? [];
        $websiteCode = $this->websiteCode($dbData, (string)($store['website_id'] ?? ''));
        $default = (array)($all['default'] ?? []);
        $data = [
            'default' => $default,
            'store' => array_replace_recursive(
                $default,
                $websiteCode !== null ? (array)($all['websites'][$websiteCode] ?? []) : [],
                (array)($all['stores'][$storeCode] ?? [])
            ),
        ];
        $cache->save('config', $key, (string)json_encode($data));
        return $data;
    }

    /**
     * Store\Model\Config\Placeholder: {{unsecure_base_url}} / {{secure_base_url}} from the
     * same data, {{base_url}} = Request::getDistroBaseUrl().
     */
    public static function value(array $data, string $path, string $distroBaseUrl): ?string
    {
        $value = self::byPath($data, $path);
        if ($value === null || is_array($value)) {
            return null;
        }
        $value = (string)$value;
        for ($i = 0; $i < 10 && preg_match('/{{(.*)}}.*/', $value, $m); ++$i) {
            $placeholder = $m[1];
            $url = match ($placeholder) {
                'unsecure_base_url' => self::byPath($data, 'web/unsecure/base_url'),
                'secure_base_url' => self::byPath($data, 'web/secure/base_url'),
                default => null,
            };
            if ($url) {
                $value = str_replace('{{' . $placeholder . '}}', (string)$url, $value);
            } elseif (str_contains($value, '{{base_url}}')) {
                $value = str_replace('{{base_url}}', $distroBaseUrl, $value);
            } else {
                break;
            }
        }
        return $value;
    }

    /**
     * The store view a request runs: MAGE_RUN_TYPE/MAGE_RUN_CODE (store or website), else
     * the default website's default group's default store (StoreResolver).
     */
    public function runStoreCode(array $server, array $db): string
    {
        $scopes = $this->scopes($db);
        $type = (string)($server['MAGE_RUN_TYPE'] ?? 'store');
        $code = (string)($server['MAGE_RUN_CODE'] ?? '');
        if ($type === 'store' && $code !== '' && isset($scopes['stores'][$code])) {
            return $code;
        }
        $website = null;
        foreach ($scopes['websites'] as $websiteCode => $row) {
            if (($type === 'website' && $code !== '') ? $websiteCode === $code : !empty($row['is_default'])) {
                $website = $row;
            }
        }
        $groupId = (string)($website['default_group_id'] ?? '1');
        $storeId = '1';
        foreach ($scopes['groups'] as $group) {
            if ((string)($group['group_id'] ?? '') === $groupId) {
                $storeId = (string)($group['default_store_id'] ?? '1');
            }
        }
        foreach ($scopes['stores'] as $storeCode => $row) {
            if ((string)($row['store_id'] ?? '') === $storeId) {
                return (string)$storeCode;
            }
        }
        return 'default';
    }

    // ------------------------------------------------------------------ scopes

    /**
     * Websites, groups, stores: the database (what app:config:import imported) overridden
     * by config.php/env.php 'scopes' (scopesConfigSourceAggregated, files last).
     * @return array{websites: array<string, array>, groups: array, stores: array<string, array>}
     */
    public function scopes(array $db): array
    {
        $files = $this->config->getConfigData('scopes');
        $fromDb = is_array($db['store_scopes'] ?? null) ? $db['store_scopes'] : [];
        $scopes = array_replace_recursive($fromDb, is_array($files) ? $files : []);
        return [
            'websites' => (array)($scopes['websites'] ?? []),
            'groups' => (array)($scopes['groups'] ?? []),
            'stores' => (array)($scopes['stores'] ?? []),
        ];
    }

    /** Scope validator's resolver: does this website/store code exist? */
    public function scopeExists(string $scope, string $code, array $db): bool
    {
        $scopes = $this->scopes($db);
        return match (rtrim($scope, 's')) {
            'website' => isset($scopes['websites'][$code]),
            'store' => isset($scopes['stores'][$code]),
            'group' => in_array($code, array_column($scopes['groups'], 'code'), true),
            default => false,
        };
    }

    private function websiteCode(array $db, string $websiteId): ?string
    {
        foreach ($this->scopes($db)['websites'] as $code => $row) {
            if ((string)($row['website_id'] ?? '') === $websiteId) {
                return (string)$code;
            }
        }
        return null;
    }

    /** ScopeCodeResolver::resolve() for a core_config_data row. */
    private function scopeCode(array $db, string $scope, mixed $scopeId): string
    {
        $kind = $scope === 'websites' ? 'websites' : 'stores';
        $idKey = $kind === 'websites' ? 'website_id' : 'store_id';
        foreach ($this->scopes($db)[$kind] as $code => $row) {
            if ((string)($row[$idKey] ?? '') === (string)$scopeId) {
                return (string)$code;
            }
        }
        throw new LocalizedException($kind === 'websites'
            ? sprintf('The website with id %s that was requested wasn\'t found. Verify the website and try again.', $scopeId)
            : 'The store that was requested wasn\'t found. Verify the store and try again.');
    }

    // ------------------------------------------------------------------ sources

    /** RuntimeConfigSource::loadConfig(): core_config_data as scope => [code =>] tree. */
    private function runtime(array $db): array
    {
        $flat = [];
        foreach ((array)($db['core_config_data'] ?? []) as $row) {
            if (!is_array($row) || !isset($row['path'])) {
                continue;
            }
            $scope = (string)($row['scope'] ?? 'default');
            if ($scope === 'default') {
                $flat['default'][(string)$row['path']] = $row['value'] ?? null;
            } else {
                $code = $this->scopeCode($db, $scope, $row['scope_id'] ?? 0);
                $flat[$scope][$code][(string)$row['path']] = $row['value'] ?? null;
            }
        }
        $config = [];
        foreach ($flat as $scope => $items) {
            if ($scope === 'default') {
                $config[$scope] = self::convert($items);
            } else {
                foreach ($items as $code => $scopeItems) {
                    $config[$scope][$code] = self::convert($scopeItems);
                }
            }
        }
        return $config;
    }

    /** @return array<string, mixed> config.php + env.php 'system' */
    private function initial(): array
    {
        $system = $this->config->getConfigData('system');
        return is_array($system) ? $system : [];
    }

    /** EnvironmentConfigSource: CONFIG__DEFAULT__WEB__SECURE__BASE_URL -> default/web/... */
    private static function environment(): array
    {
        $config = [];
        foreach ($_ENV as $name => $value) {
            if (!is_string($name) || !preg_match('/^CONFIG__([a-zA-Z]+)([a-zA-Z0-9_])*$/', $name)) {
                continue;
            }
            $keys = explode('/', strtolower(str_replace('__', '/', substr($name, strlen('CONFIG__')))));
            $pointer = &$config;
            foreach ($keys as $key) {
                if (!isset($pointer[$key]) || !is_array($pointer[$key])) {
                    $pointer[$key] = [];
                }
                $pointer = &$pointer[$key];
            }
            $pointer = $value;
            unset($pointer);
        }
        return $config;
    }

    /** Config\Scope\Converter::convert(): "a/b/c" => value to a tree. */
    private static function convert(array $items): array
    {
        $output = [];
        foreach ($items as $path => $value) {
            $pointer = &$output;
            foreach (explode('/', (string)$path) as $segment) {
                if (!isset($pointer[$segment]) || !is_array($pointer[$segment])) {
                    $pointer[$segment] = [];
                }
                $pointer = &$pointer[$segment];
            }
            $pointer = $value;
            unset($pointer);
        }
        return $output;
    }

    /** DataObject::getData($path): isset() at each level, so null counts as missing. */
    public static function byPath(array $data, string $path): mixed
    {
        if ($path === '') {
            return $data;
        }
        foreach (explode('/', $path) as $key) {
            if (!is_array($data) || !isset($data[$key])) {
                return null;
            }
            $data = $data[$key];
        }
        return $data;
    }
}
