<?php
/**
 * pub/get.php, reduced: the web server sends here /media/ URLs that are not files on
 * disk. Magento first syncs the file from database media storage and resizes catalog
 * images on demand; the fake has neither, so a readable file under pub/media is sent and
 * anything else is answered 404 (Magento's placeholder response has that status too).
 */
declare(strict_types=1);

namespace FakeMagento\Storefront;

final class Media
{
    /** @param array<string, mixed> $server */
    public static function run(string $bp, array $server): void
    {
        $uri = (string)parse_url((string)($server['REQUEST_URI'] ?? ''), PHP_URL_PATH);
        $relative = preg_match('#^/media/(.+)$#', $uri, $m) ? $m[1] : '';
        $file = $bp . '/pub/media/' . $relative;
        if ($relative === '' || str_contains($relative, '..') || !is_file($file) || !is_readable($file)) {
            http_response_code(404);
            return;
        }
        $type = function_exists('mime_content_type') ? mime_content_type($file) : false;
        header('Content-Type: ' . ($type ?: 'application/octet-stream'));
        readfile($file);
    }
}
