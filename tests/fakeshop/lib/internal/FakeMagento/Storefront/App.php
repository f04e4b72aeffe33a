<?php
/**
 * The storefront request, in the order Magento checks things:
 *  1. Bootstrap::assertMaintenance()  flag in <BP>/var and client not exempt -> 503 page;
 *  2. Bootstrap::assertInstalled()    no env.php / DB config -> error report;
 *  3. FrontController plugins, both skipped with deployment/blue_green/enabled (2.4.4+):
 *     - Module\Plugin\DbStatusValidator: setup_version vs setup_module; the success is
 *       cached as 'db_is_up_to_date' in the config cache, so once cached the check is
 *       skipped until that cache is cleaned (by setup:upgrade, cache:clean|flush...);
 *     - Deploy\Model\Plugin\ConfigChangeDetector: config.php/env.php hash vs the DB;
 *     - Store\App\FrontController\Plugin\RequestPreprocessor: a request whose scheme or
 *       host does not match the store's base URL is redirected there (see
 *       RequestPreprocessor; web/url/redirect_to_base);
 *  4. the page needs the static content version (pub/static/deployed_version.txt).
 * Errors go to ExceptionHandler (developer mode: plain text 500; else the report page).
 * Test hook (not Magento): the faults file's "storefront" entry, applied where the front
 * controller starts (after 1 and 2): "sleep" seconds, then "status" (500: an exception,
 * so Magento's report page; another code: that status with a plain text body).
 */
declare(strict_types=1);

namespace FakeMagento\Storefront;

use FakeMagento\Exception\BootstrapException;
use FakeMagento\Exception\LocalizedException;
use FakeMagento\Faults;
use FakeMagento\Shop;
use FakeMagento\StaticContent;
use FakeMagento\SystemConfig;

final class App
{
    private ?array $db = null;

    private function __construct(private readonly Shop $shop, private readonly array $server)
    {
    }

    public static function run(string $bp, array $server, string $label): void
    {
        $app = new self(new Shop($bp), $server);
        try {
            $app->assertMaintenance();
            $app->assertInstalled();
            if ($app->injectFault()) {
                return;
            }
            if (!$app->shop->config->isBlueGreen()) {
                $app->validateDbStatus();
                $app->detectConfigChange();
            }
            if ($app->redirectToBase()) {
                return;
            }
            $version = $app->shop->staticContent()->storefrontVersion($app->shop->config);
            $app->renderPage($label, $version);
        } catch (\Throwable $e) {
            (new ExceptionHandler($app->shop, $server))->handle($e);
        }
    }

    private function assertMaintenance(): void
    {
        if ($this->shop->maintenance()->isOn((string)($this->server['REMOTE_ADDR'] ?? ''))) {
            throw new BootstrapException(
                'Unable to proceed: the maintenance mode is enabled. ',
                BootstrapException::ERR_MAINTENANCE
            );
        }
    }

    private function assertInstalled(): void
    {
        if (!$this->shop->config->isAvailable()) {
            throw new BootstrapException('Application is not installed yet. ', BootstrapException::ERR_IS_INSTALLED);
        }
    }

    private function validateDbStatus(): void
    {
        if ($this->shop->cache()->load('config', 'db_is_up_to_date') !== null) {
            return;
        }
        $error = $this->shop->dbStatus($this->db())->storefrontError();
        if ($error !== null) {
            throw new LocalizedException($error);
        }
        $this->shop->cache()->save('config', 'db_is_up_to_date', 'true');
    }

    private function detectConfigChange(): void
    {
        if ($this->shop->configState()->hasChanges($this->db())) {
            throw new LocalizedException(
                'The configuration file has changed.'
                . ' Run the "app:config:import" or the "setup:upgrade" command to synchronize the configuration.'
            );
        }
    }

    /** Test hook: the faults file's "storefront" entry (see the class comment). */
    private function injectFault(): bool
    {
        $path = (string)parse_url('http://x' . ($this->server['REQUEST_URI'] ?? '/'), PHP_URL_PATH);
        $fault = Faults::forStorefront($this->shop->config, $path ?: '/');
        Faults::sleep($fault);
        $status = (int)($fault['status'] ?? 0);
        if ($status === 500) {
            throw new LocalizedException((string)($fault['message'] ?? 'Injected storefront failure (test hook)'));
        }
        if ($status > 0) {
            http_response_code($status);
            header('Content-Type: text/plain; charset=UTF-8');
            echo (string)($fault['message'] ?? "Injected status $status (test hook)"), "\n";
            return true;
        }
        return false;
    }

    /** RequestPreprocessor: answers the redirect and returns true, or returns false. */
    private function redirectToBase(): bool
    {
        $system = new SystemConfig($this->shop->config);
        $data = $system->effective($this->shop->cache(), fn (): array => $this->db(), $this->server);
        $offloader = (string)SystemConfig::value($data['default'], 'web/secure/offloader_header', '');
        $request = new Request($this->server, $offloader);
        $distro = $request->getDistroBaseUrl();
        $config = static fn (string $path, bool $default = false): ?string
            => SystemConfig::value($default ? $data['default'] : $data['store'], $path, $distro);
        $redirect = (new RequestPreprocessor($request, $config))->redirect();
        if ($redirect === null) {
            return false;
        }
        [$url, $code] = $redirect;
        http_response_code($code);
        header('Location: ' . $url);
        header('Pragma: no-cache');
        header('Cache-Control: max-age=0, must-revalidate, no-cache, no-store');
        header('Expires: ' . gmdate('D, d M Y H:i:s', (int)strtotime('-1 year')) . ' GMT');
        header('X-Frame-Options: SAMEORIGIN');
        return true;
    }

    private function db(): array
    {
        return $this->db ??= $this->shop->db()->read();
    }

    private function renderPage(string $label, string $version): void
    {
        $theme = 'Magento/luma';
        $codes = array_column(StaticContent::themes(), 'code', 'code');
        if (!isset($codes[$theme])) {
            $frontend = array_values(array_filter(StaticContent::themes(), fn ($t) => $t['area'] === 'frontend'));
            $theme = $frontend[0]['code'] ?? $theme;
        }
        $locale = (string)($this->shop->config->get('system/default/general/locale/code') ?: 'en_US');
        $css = "/static/version{$version}/frontend/{$theme}/{$locale}/css/styles-m.css";
        http_response_code(200);
        header('Content-Type: text/html; charset=UTF-8');
        header('X-Frame-Options: SAMEORIGIN');
        $lines = [
            'label=' . $label,
            'bp=' . $this->shop->bp,
            'static=' . $version,
            'mode=' . $this->shop->config->mode(),
        ];
        echo "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>Home Page</title>\n"
            . '<link rel="stylesheet" type="text/css" media="all" href="' . htmlspecialchars($css) . "\"/>\n"
            . "</head>\n<body>\n<pre>\n" . htmlspecialchars(implode("\n", $lines)) . "\n</pre>\n</body>\n</html>\n";
    }
}
