<?php
/**
 * Reproduces Magento\Framework\App\DeploymentConfig: app/etc/config.php (committed) merged
 * with app/etc/env.php (per environment, here a symlink to the shared file).
 */
declare(strict_types=1);

namespace FakeMagento;

final class DeploymentConfig
{
    /** @var array<string, mixed> */
    private array $env = [];
    /** @var array<string, mixed> */
    private array $config = [];
    /** @var array<string, mixed> both files merged, env.php winning */
    private array $merged = [];

    public function __construct(private readonly string $bp)
    {
        $this->reload();
    }

    public function reload(): void
    {
        $this->env = self::load($this->bp . '/app/etc/env.php');
        $this->config = self::load($this->bp . '/app/etc/config.php');
        $this->merged = array_replace_recursive($this->config, $this->env);
    }

    /** @return array<string, mixed> */
    private static function load(string $file): array
    {
        if (!is_file($file)) {
            return [];
        }
        $data = include $file;
        return is_array($data) ? $data : [];
    }

    /** Value at a slash-separated path ("db/connection/default"), env.php winning. */
    public function get(string $path, mixed $default = null): mixed
    {
        $value = $this->merged;
        foreach (explode('/', $path) as $key) {
            if (!is_array($value) || !array_key_exists($key, $value)) {
                return $default;
            }
            $value = $value[$key];
        }
        return $value;
    }

    /** Section as ConfigImport's DataCollector sees it: config.php and env.php merged. */
    public function getConfigData(string $section): mixed
    {
        $fromConfig = $this->config[$section] ?? null;
        $fromEnv = $this->env[$section] ?? null;
        if (is_array($fromConfig) && is_array($fromEnv)) {
            return array_replace_recursive($fromConfig, $fromEnv);
        }
        return $fromEnv ?? $fromConfig;
    }

    /** @return array<string, mixed> the raw app/etc/config.php array */
    public function configFile(): array
    {
        return $this->config;
    }

    /**
     * Magento's isAvailable() checks install/date; we also accept a configured DB
     * connection so a hand-written env.php without 'install' counts as installed.
     */
    public function isAvailable(): bool
    {
        return $this->get('install/date') !== null || $this->dbPath() !== null;
    }

    public function dbPath(): ?string
    {
        $name = $this->get('db/connection/default/dbname');
        return is_string($name) && $name !== '' ? $name : null;
    }

    /** MAGE_MODE from env.php; Magento's default mode is "default". */
    public function mode(): string
    {
        $mode = $this->get('MAGE_MODE');
        return is_string($mode) && $mode !== '' ? $mode : 'default';
    }

    public function isBlueGreen(): bool
    {
        return (bool)$this->get('deployment/blue_green/enabled');
    }
}
