<?php
/**
 * Reproduces Magento\Deploy\Model\DeploymentConfig\ChangeDetector + Hash + ImporterPool:
 * the importable sections of config.php/env.php ('scopes', 'themes', 'system') are hashed
 * per section; app:config:import stores the hashes in the DB (flag 'config_hash') and
 * app:config:status / the storefront compare them with the files.
 *
 * Hash: sha1 of canonical JSON (keys sorted, lists kept), so tests/shop.py can compute
 * the same value without PHP.
 */
declare(strict_types=1);

namespace FakeMagento;

final class ConfigState
{
    /** section => [importer messages], in ImporterPool sort order */
    public const IMPORTERS = [
        'scopes' => ['Stores were processed'],
        'themes' => ['Theme import was started.', 'Theme import was finished.'],
        'system' => ['System config was processed'],
    ];

    public function __construct(private readonly DeploymentConfig $config)
    {
    }

    /** ChangeDetector::hasChanges($section) against the hashes stored in $db. */
    public function hasChanges(array $db, ?string $section = null): bool
    {
        $stored = $db['flag']['config_hash'] ?? [];
        foreach ($this->sections($section) as $name) {
            $data = $this->config->getConfigData($name);
            if ($data === null) {
                continue;
            }
            $saved = $stored[$name] ?? null;
            $generated = empty($data) && $saved === null ? null : self::hash($data);
            if ($generated !== $saved) {
                return true;
            }
        }
        return false;
    }

    /** Hash::regenerate(): hashes of every section present in the files. */
    public function hashes(): array
    {
        $hashes = [];
        foreach (array_keys(self::IMPORTERS) as $name) {
            $data = $this->config->getConfigData($name);
            if ($data !== null) {
                $hashes[$name] = self::hash($data);
            }
        }
        return $hashes;
    }

    /** @return string[] */
    private function sections(?string $section): array
    {
        return $section === null ? array_keys(self::IMPORTERS) : [$section];
    }

    public static function hash(mixed $data): string
    {
        return sha1(json_encode(self::canonical($data), JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE));
    }

    private static function canonical(mixed $data): mixed
    {
        if (!is_array($data)) {
            return $data;
        }
        if (array_is_list($data)) {
            return array_map([self::class, 'canonical'], $data);
        }
        ksort($data, SORT_STRING);
        return (object)array_map([self::class, 'canonical'], $data);
    }
}
