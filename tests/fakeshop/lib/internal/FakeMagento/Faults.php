<?php
/**
 * Test hook (not Magento behaviour): env.php 'fake' => ['faults' => '/abs/faults.json'],
 * read at every invocation. {"setup:upgrade": {"sleep": 2.5}} slows a command down,
 * {"setup:upgrade": {"exit": 1, "message": "..."}} makes it fail the way Magento fails
 * that command. Optional: "when": "after" (do the work, then fail), "stream":
 * "stdout"|"stderr" (override where the message goes). The storefront (pub/index.php)
 * reads the "storefront" entry: {"status": 500} and/or {"sleep": 30}, optional "path".
 */
declare(strict_types=1);

namespace FakeMagento;

final class Faults
{
    /** @return array<string, mixed>|null the fault for $command, if any */
    public static function forCommand(DeploymentConfig $config, string $command): ?array
    {
        $path = $config->get('fake/faults');
        if (!is_string($path) || $path === '' || !is_file($path)) {
            return null;
        }
        $all = json_decode((string)file_get_contents($path), true);
        $fault = is_array($all) ? ($all[$command] ?? null) : null;
        return is_array($fault) ? $fault : null;
    }

    /**
     * The "storefront" fault for a request path: {"storefront": {"status": 500}},
     * {"storefront": {"sleep": 30}}, optionally {"path": "/exact/path"} (only that path).
     * @return array<string, mixed>|null
     */
    public static function forStorefront(DeploymentConfig $config, string $path): ?array
    {
        $fault = self::forCommand($config, 'storefront');
        if ($fault !== null && isset($fault['path']) && (string)$fault['path'] !== $path) {
            return null;
        }
        return $fault;
    }

    public static function sleep(?array $fault): void
    {
        $seconds = (float)($fault['sleep'] ?? 0);
        if ($seconds > 0) {
            usleep((int)round($seconds * 1_000_000));
        }
    }
}
