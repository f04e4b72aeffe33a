<?php
/**
 * Magento's app/bootstrap.php: BP is the physical (symlink-resolved) release directory,
 * umask from magento_umask (default 002), and an HTML "Autoload error" with HTTP 500 when
 * vendor/ is missing.
 */
error_reporting(E_ALL);
date_default_timezone_set('UTC');

if (!defined('BP')) {
    define('BP', (string)realpath(dirname(__DIR__)));
}
$umaskFile = BP . '/magento_umask';
umask(file_exists($umaskFile) ? octdec(trim((string)file_get_contents($umaskFile))) : 002);

try {
    require __DIR__ . '/autoload.php';
} catch (\Exception $e) {
    echo <<<HTML
<div style="font:12px/1.35em arial, helvetica, sans-serif;">
    <div style="margin:0 0 25px 0; border-bottom:1px solid #ccc;">
        <h3 style="margin:0;font-size:1.7em;font-weight:normal;text-transform:none;text-align:left;color:#2f2f2f;">
        Autoload error</h3>
    </div>
    <p>{$e->getMessage()}</p>
</div>
HTML;
    http_response_code(500);
    exit(1);
}
