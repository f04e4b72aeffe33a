<?php
/**
 * The parts of Magento\Framework\App\Request\Http the storefront's base URL check uses,
 * from $_SERVER as nginx/php-fpm (or Apache) fill it:
 *  - isSecure(): HTTPS non-empty and not "off", or SERVER_PORT 443; otherwise the header
 *    named by web/secure/offloader_header (default scope; default "X-Forwarded-Proto",
 *    i.e. $_SERVER['HTTP_X_FORWARDED_PROTO'], or the same name without HTTP_) equal to
 *    "https" (exactly, lower case);
 *  - getScheme(): https when isSecure(), else http;
 *  - getHttpHost(): HTTP_HOST without its port;
 *  - getDistroBaseUrl(): what {{base_url}} becomes: scheme from HTTPS/port 443 only (not
 *    the offloader header), HTTP_HOST (a non-default port kept), the script's directory.
 */
declare(strict_types=1);

namespace FakeMagento\Storefront;

final class Request
{
    public function __construct(private readonly array $server, private readonly string $offloaderHeader)
    {
    }

    public function isPost(): bool
    {
        return ($this->server['REQUEST_METHOD'] ?? 'GET') === 'POST';
    }

    public function isSecure(): bool
    {
        $https = $this->server['HTTPS'] ?? null;
        if ((!empty($https) && $https !== 'off') || (string)($this->server['SERVER_PORT'] ?? '') === '443') {
            return true;
        }
        $name = str_replace('-', '_', strtoupper(trim($this->offloaderHeader)));
        return $name !== ''
            && (($this->server[$name] ?? null) === 'https' || ($this->server['HTTP_' . $name] ?? null) === 'https');
    }

    public function getScheme(): string
    {
        return $this->isSecure() ? 'https' : 'http';
    }

    public function getHttpHost(): string|false
    {
        $host = (string)($this->server['HTTP_HOST'] ?? '');
        return $host === '' ? false : explode(':', $host)[0];
    }

    public function getRequestUri(): string
    {
        return (string)($this->server['REQUEST_URI'] ?? '');
    }

    public function serverPort(): ?string
    {
        return isset($this->server['SERVER_PORT']) ? (string)$this->server['SERVER_PORT'] : null;
    }

    /** The path after the script (or its directory), without the query string. */
    public function getPathInfo(): string
    {
        $path = (string)parse_url('http://x' . $this->getRequestUri(), PHP_URL_PATH);
        $path = (string)preg_replace('#/+#', '/', $path);
        $script = (string)($this->server['SCRIPT_NAME'] ?? '');
        if ($script !== '' && str_starts_with($path, $script)) {
            return substr($path, strlen($script)) ?: '/';
        }
        $base = $this->basePath();
        return $base !== '' && str_starts_with($path, $base) ? (substr($path, strlen($base)) ?: '/') : $path;
    }

    public function scriptFileName(): string
    {
        return basename((string)($this->server['SCRIPT_FILENAME'] ?? 'index.php'));
    }

    public function getDistroBaseUrl(): string
    {
        $host = $this->server['HTTP_HOST'] ?? null;
        if (!isset($this->server['SCRIPT_NAME']) || $host === null) {
            return 'http://localhost/';
        }
        $https = $this->server['HTTPS'] ?? null;
        $secure = (!empty($https) && $https !== 'off') || (string)($this->server['SERVER_PORT'] ?? '') === '443';
        $parts = explode(':', (string)$host);
        $port = isset($parts[1]) && ((!$secure && $parts[1] != 80) || ($secure && $parts[1] != 443))
            ? ':' . $parts[1] : '';
        return ($secure ? 'https://' : 'http://') . $parts[0] . $port . rtrim($this->basePath(), '/') . '/';
    }

    private function basePath(): string
    {
        $dir = str_replace('\\', '/', dirname((string)($this->server['SCRIPT_NAME'] ?? '/index.php')));
        return $dir === '.' || $dir === '/' ? '' : $dir;
    }
}
