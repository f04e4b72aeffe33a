<?php
/**
 * pub/errors (Magento\Framework\Error\Processor, skin "default"): the 503 maintenance page,
 * the 404 page and the error report page. pub/errors/local.xml <report><action>print</action> shows
 * the exception message (HTML-escaped, like Magento) instead of "Exception printing is
 * disabled by default for security reasons."
 */
declare(strict_types=1);

namespace FakeMagento\Storefront;

final class ErrorPages
{
    /** Processor::process503(). */
    public static function render503(): void
    {
        http_response_code(503);
        header('Content-Type: text/html; charset=UTF-8');
        echo self::page(
            'Error 503: Service Unavailable',
            "<div id=\"main\" class=\"col-main\">\n"
            . "    <div class=\"page-title\">\n        <h1>Service Temporarily Unavailable</h1>\n    </div>\n"
            . '    <p>The server is temporarily unable to service your request due to maintenance downtime or'
            . " capacity problems. Please try again later.</p>\n</div>"
        );
    }

    /** Processor::process404() (pub/errors/404.php, skin "default"). */
    public static function render404(): void
    {
        http_response_code(404);
        header('Content-Type: text/html; charset=UTF-8');
        echo self::page(
            'Error 404: Not Found',
            "<div id=\"main\" class=\"col-main\">\n    <div class=\"page-title\">\n"
            . "        <h1>404 error: Page not found.</h1>\n    </div>\n</div>"
        );
    }

    /** ExceptionHandler::handleGenericReport() + Processor::saveReport()/processReport(). */
    public static function renderReport(string $bp, \Throwable $e, array $server): void
    {
        $reportData = [$e->getMessage(), $e->getTraceAsString()];
        if (isset($server['REQUEST_URI'])) {
            $reportData['url'] = $server['REQUEST_URI'];
        }
        if (isset($server['SCRIPT_NAME'])) {
            $reportData['script_name'] = $server['SCRIPT_NAME'];
        }
        $reportId = hash('sha256', implode('', $reportData) . microtime());
        $reportData['report_id'] = $reportId;
        $dir = $bp . '/var/report';
        if (!is_dir($dir)) {
            @mkdir($dir, 0777, true);
        }
        @file_put_contents($dir . '/' . $reportId, json_encode($reportData, JSON_UNESCAPED_SLASHES) . PHP_EOL);

        $action = self::reportAction($bp);
        $body = "<div class=\"col-main\">\n    <div class=\"page-title\">\n"
            . "        <h1>There has been an error processing your request</h1>\n    </div>\n";
        if ($action === '') {
            $body .= "    <p><em>Exception printing is disabled by default for security reasons.</em></p>\n";
        }
        if ($action === 'print') {
            $body .= "    <div class=\"trace-container\">\n        <div class=\"trace\">\n"
                . '            <pre>' . htmlspecialchars($e->getMessage()) . "</pre>\n        </div>\n    </div>\n";
        }
        $body .= '    <p>Error log record number: ' . $reportId . "</p>\n</div>";
        http_response_code(500);
        header('Content-Type: text/html; charset=UTF-8');
        echo self::page('There has been an error processing your request', $body);
    }

    /** <report><action> of pub/errors/local.xml ('' when absent, like Magento's default). */
    private static function reportAction(string $bp): string
    {
        $file = $bp . '/pub/errors/local.xml';
        $xml = is_file($file) ? (string)file_get_contents($file) : '';
        $xml = (string)preg_replace('/<!--.*?-->/s', '', $xml);
        return preg_match('#<report>.*?<action>\s*([a-z]*)\s*</action>#s', $xml, $m) ? $m[1] : '';
    }

    /** default/page.phtml. */
    private static function page(string $title, string $content): string
    {
        return "<!doctype html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" >\n<head>\n"
            . '    <title>' . $title . "</title>\n"
            . "    <meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\" />\n"
            . "    <meta name=\"robots\" content=\"*\"/>\n</head>\n<body>\n    <main class=\"page-main\">\n"
            . $content . "\n    </main>\n</body>\n</html>\n";
    }
}
