<?php
/**
 * Reproduces Magento\Framework\Module\ModuleList + ModuleList\Loader:
 *  - a module is "in the code" when its registration.php registered it and it has
 *    etc/module.xml (parsed with a regex: the fake must not need php-xml);
 *  - it is enabled when app/etc/config.php has 'modules' => ['Name' => 1].
 * setup_version is optional since 2.3 (declarative schema); modules without it are not
 * version-checked.
 */
declare(strict_types=1);

namespace FakeMagento;

final class ModuleList
{
    public function __construct(private readonly DeploymentConfig $config)
    {
    }

    /** @return array<string, array{path: string, setup_version: ?string}> */
    public function codeModules(): array
    {
        $modules = [];
        foreach (ComponentRegistrar::getPaths(ComponentRegistrar::MODULE) as $name => $path) {
            $xml = $path . '/etc/module.xml';
            if (is_file($xml)) {
                $modules[$name] = ['path' => $path, 'setup_version' => self::setupVersion($xml)];
            }
        }
        return $modules;
    }

    /** @return array<string, array{path: string, setup_version: ?string}> */
    public function enabled(): array
    {
        $flags = $this->config->get('modules', []);
        $flags = is_array($flags) ? $flags : [];
        return array_filter(
            $this->codeModules(),
            static fn (string $name): bool => (int)($flags[$name] ?? 0) === 1,
            ARRAY_FILTER_USE_KEY
        );
    }

    /** @return string[] */
    public function enabledNames(): array
    {
        return array_keys($this->enabled());
    }

    private static function setupVersion(string $file): ?string
    {
        $xml = (string)file_get_contents($file);
        if (!preg_match('/<module\b[^>]*>/s', $xml, $tag)) {
            return null;
        }
        return preg_match('/\bsetup_version\s*=\s*"([^"]*)"/', $tag[0], $m) && $m[1] !== ''
            ? $m[1]
            : null;
    }

    /** Class names of the module's patches of one kind ("Data" or "Schema"). */
    public static function patches(string $moduleName, string $modulePath, string $kind): array
    {
        $namespace = str_replace('_', '\\', $moduleName) . '\\Setup\\Patch\\' . $kind . '\\';
        $files = glob($modulePath . '/Setup/Patch/' . $kind . '/*.php') ?: [];
        sort($files);
        return array_map(static fn (string $f): string => $namespace . basename($f, '.php'), $files);
    }

    /** Declarative schema of a module: sha1 of etc/db_schema.xml, null without one. */
    public static function schemaHash(string $modulePath): ?string
    {
        $file = $modulePath . '/etc/db_schema.xml';
        return is_file($file) ? sha1((string)file_get_contents($file)) : null;
    }
}
