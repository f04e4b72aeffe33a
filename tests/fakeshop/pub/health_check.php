<?php
/**
 * Magento 2.4's pub/health_check.php, same checks in the same order, same answers:
 *  - the application cannot start (no vendor/autoload.php: app/bootstrap.php answers 500
 *    with its "Autoload error" page; any other exception while starting: 500);
 *  - every connection of env.php db/connection is opened (here: the JSON file dbname);
 *    one that fails: 500, "MySQL connection failed: <why>" logged;
 *  - every cache frontend of env.php cache/frontend that names a 'backend' must have
 *    'backend_options' ("Cache configuration is invalid") and a usable storage (here, like
 *    Cm_Cache_Backend_File: the cache_dir exists or can be created, and is writable;
 *    "Cache storage is not accessible"); frontends without 'backend' are skipped;
 *  - a fatal error (E_ERROR): 500.
 * Otherwise 200 with an empty body. Failures have an empty body too; the reason goes to
 * Magento's log (<BP>/var/log/system.log, "main.ERROR: ..."). Not installed (no
 * db/connection) is NOT a failure: Magento's foreach over null only warns. Maintenance
 * is not checked.
 */
declare(strict_types=1);

register_shutdown_function('fatalErrorHandler');

try {
    require __DIR__ . '/../app/bootstrap.php';
    $shop = new \FakeMagento\Shop(BP);
    $deploymentConfig = $shop->config;
} catch (\Exception $e) {
    http_response_code(500);
    exit(1);
}

// check mysql connectivity
foreach ($deploymentConfig->get('db/connection') as $connectionData) {
    try {
        healthCheckConnect($connectionData);
    } catch (\Exception $e) {
        http_response_code(500);
        healthCheckLog('MySQL connection failed: ' . $e->getMessage());
        exit(1);
    }
}

// check cache storage availability
$cacheConfigs = $deploymentConfig->get('cache/frontend');
if ($cacheConfigs) {
    foreach ($cacheConfigs as $frontend => $cacheConfig) {
        if (!isset($cacheConfig['backend'])) {
            continue;
        } elseif (!isset($cacheConfig['backend_options'])) {
            http_response_code(500);
            healthCheckLog('Cache configuration is invalid');
            exit(1);
        }
        try {
            healthCheckCacheStorage($shop->cache()->dir((string)$frontend));
        } catch (\Exception $e) {
            http_response_code(500);
            healthCheckLog('Cache storage is not accessible');
            exit(1);
        }
    }
}

/** The fake's "PDO connect": the database file must exist and open (nothing is read). */
function healthCheckConnect(mixed $config): void
{
    $path = is_array($config) ? ($config['dbname'] ?? null) : null;
    if (!is_string($path) || $path === '') {
        throw new \Exception("Configuration array must have a key for 'dbname' that names the database instance");
    }
    $handle = is_file($path) ? @fopen($path, 'rb') : false;
    if ($handle === false) {
        throw new \FakeMagento\Exception\DbConnectionException($path);
    }
    fclose($handle);
}

/** The fake's cache backend test: a directory that exists (or is created) and is writable. */
function healthCheckCacheStorage(string $dir): void
{
    if (!is_dir($dir) && @mkdir($dir, 0777, true)) {
        @chmod($dir, 0777);
    }
    if (!is_dir($dir) || !is_writable($dir)) {
        throw new \RuntimeException("cache_dir \"$dir\" is not writable");
    }
}

/** Psr\Log\LoggerInterface::error() through Magento's system handler. */
function healthCheckLog(string $message): void
{
    $dir = BP . '/var/log';
    if (!is_dir($dir)) {
        @mkdir($dir, 0777, true);
    }
    $time = (new \DateTimeImmutable())->format('Y-m-d\TH:i:s.uP');
    @file_put_contents("$dir/system.log", "[$time] main.ERROR: $message [] []\n", FILE_APPEND | LOCK_EX);
}

/**
 * Handle any fatal errors
 */
function fatalErrorHandler(): void
{
    $error = error_get_last();
    if ($error !== null && $error['type'] === E_ERROR) {
        http_response_code(500);
    }
}
