<?php
/**
 * pub/static.php: Magento\Framework\App\StaticResource run by App\Bootstrap (2.4).
 *
 * The web server sends here every /static/ URL that is not a file on disk (nginx's
 * sample rewrites it to static.php?resource=<path after /static/, minus a digits-only
 * version signature>). In order:
 *  1. Bootstrap::run(): maintenance flag (client not exempt), then "is installed";
 *  2. launch(): production mode without static_content_on_demand_in_production answers
 *     404 with no body and publishes NOTHING: a missing or mis-versioned asset stays
 *     missing;
 *  3. otherwise the resource is parsed as <area>/<vendor>/<theme>/<locale>/<file>
 *     (fewer parts or ".." -> "Requested path '...' is wrong."), the theme must exist,
 *     and the file is published from the theme's sources into pub/static and sent;
 *  4. catchException(): developer mode -> 404 text/plain with the message, else the
 *     pub/errors/404.php page.
 */
declare(strict_types=1);

namespace FakeMagento\Storefront;

use FakeMagento\Exception\BootstrapException;
use FakeMagento\Shop;
use FakeMagento\StaticContent;

final class StaticResource
{
    private const TYPES = ['css' => 'text/css', 'js' => 'application/javascript', 'json' => 'application/json'];

    private function __construct(private readonly Shop $shop)
    {
    }

    /** @param array<string, mixed> $server @param array<string, mixed> $query */
    public static function run(string $bp, array $server, array $query): void
    {
        $app = new self(new Shop($bp));
        try {
            if ($app->shop->maintenance()->isOn((string)($server['REMOTE_ADDR'] ?? ''))) {
                throw new BootstrapException('Unable to proceed: the maintenance mode is enabled. ',
                    BootstrapException::ERR_MAINTENANCE);
            }
            if (!$app->shop->config->isAvailable()) {
                throw new BootstrapException('Application is not installed yet. ', BootstrapException::ERR_IS_INSTALLED);
            }
            $app->launch((string)($query['resource'] ?? ''));
        } catch (\Throwable $e) {
            $app->catchException($e);
        }
    }

    private function launch(string $path): void
    {
        $production = $this->shop->config->mode() === 'production';
        if ($production && !$this->shop->config->get('static_content_on_demand_in_production')) {
            http_response_code(404);
            return;
        }
        try {
            [$area, $theme, $locale, $file] = self::parsePath($path);
        } catch (\InvalidArgumentException $e) {
            if ($production) {
                http_response_code(404);
                return;
            }
            throw $e;
        }
        $themes = array_map(static fn (array $t): string => $t['area'] . '/' . $t['code'], StaticContent::themes());
        if (!in_array("{$area}/{$theme}", $themes, true)) {
            throw new \InvalidArgumentException('Requested path ' . $path . ' is wrong.');
        }
        $version = $this->shop->staticContent()->storefrontVersion($this->shop->config);
        $stamp = 'release ' . $this->shop->label() . ', version ' . $version;
        $published = $this->shop->staticContent()->publish($area, $theme, $locale, $file, $stamp);
        if ($published === null) {
            throw new \RuntimeException("Unable to resolve the source file for '{$area}/{$theme}/{$locale}/{$file}'");
        }
        header('Content-Type: ' . (self::TYPES[pathinfo($file, PATHINFO_EXTENSION)] ?? 'application/octet-stream'));
        readfile($published);
    }

    /**
     * StaticResource::parsePath(): area, "Vendor/theme", locale, file (module prefixes
     * are not needed by the fake: its themes have no module files).
     * @return array{string, string, string, string}
     */
    private static function parsePath(string $path): array
    {
        $path = ltrim($path, '/');
        $parts = explode('/', $path, 5);
        if (count($parts) < 5 || str_contains($path, '..')) {
            throw new \InvalidArgumentException("Requested path '{$path}' is wrong.");
        }
        return [$parts[0], $parts[1] . '/' . $parts[2], $parts[3], $parts[4]];
    }

    private function catchException(\Throwable $e): void
    {
        if ($this->shop->config->mode() === 'developer') {
            http_response_code(404);
            header('Content-Type: text/plain');
            echo $e->getMessage(), "\n";
            return;
        }
        ErrorPages::render404();
    }
}
