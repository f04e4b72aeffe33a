<?php
/**
 * Magento's pub/health_check.php, reduced: HTTP 500 when the deployment configuration or
 * the database is unavailable, else 200 with an empty body. Maintenance is not checked.
 */
require __DIR__ . '/../app/bootstrap.php';
$shop = new \FakeMagento\Shop(BP);
try {
    if (!$shop->config->isAvailable()) {
        throw new \RuntimeException('Magento is not installed');
    }
    $shop->db()->read();
} catch (\Throwable $e) {
    error_log('Health check: ' . $e->getMessage());
    http_response_code(500);
    exit(1);
}
