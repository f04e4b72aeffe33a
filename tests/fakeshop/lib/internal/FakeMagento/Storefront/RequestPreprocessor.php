<?php
/**
 * Magento\Store\App\FrontController\Plugin\RequestPreprocessor (frontend area, a front
 * controller plugin: after the maintenance and installed checks and the DB/config checks,
 * before the page) with Store\Model\BaseUrlChecker and Store::isCurrentlySecure():
 *
 *  - checked for a request that is not POST when web/url/redirect_to_base is set (non-zero),
 *    and for a POST that is not secure when the storefront is "completely secure"
 *    (web/unsecure/base_url is https and web/secure/use_in_frontend is 1);
 *  - compared with the store's web base URL for the request's own security: secure request
 *    (see Request::isSecure(), or the secure base URL's explicit port equal to SERVER_PORT
 *    with use_in_frontend on) -> web/secure/base_url, else web/unsecure/base_url;
 *  - matches when the scheme equals the request's, the host equals HTTP_HOST (ports are
 *    not compared: getHttpHost() drops them) and the request URI *contains* the base path;
 *  - otherwise a redirect (301 when redirect_to_base is 301, else 302) to the base *link*
 *    URL (web/{secure|unsecure}/base_link_url by the same security, plus "index.php/"
 *    when web/seo/use_rewrites is off) followed by the path info: the query string is not
 *    kept (Url::getDirectUrl()). No-cache headers, empty body.
 */
declare(strict_types=1);

namespace FakeMagento\Storefront;

final class RequestPreprocessor
{
    /**
     * @param \Closure(string, bool=): ?string $config value at a path for the store view
     *        (true: default scope), placeholders resolved
     */
    public function __construct(private readonly Request $request, private readonly \Closure $config)
    {
    }

    /** The redirect [url, code] this request gets, or null when it goes on. */
    public function redirect(): ?array
    {
        if (!$this->isHttpsRedirect() && ($this->request->isPost() || !$this->flag('web/url/redirect_to_base'))) {
            return null;
        }
        $secure = $this->isCurrentlySecure();
        $baseUrl = $this->baseUrl($secure ? 'web/secure/base_url' : 'web/unsecure/base_url');
        if ($baseUrl === '' || $this->matches(parse_url($baseUrl) ?: [])) {
            return null;
        }
        $link = (string)($this->config)($secure ? 'web/secure/base_link_url' : 'web/unsecure/base_link_url');
        if (!$this->flag('web/seo/use_rewrites')) {
            $link .= $this->request->scriptFileName() . '/';
        }
        $url = rtrim($link, '/') . '/' . ltrim($this->request->getPathInfo(), '/');
        $code = (int)($this->config)('web/url/redirect_to_base') !== 301 ? 302 : 301;
        return [$url, $code];
    }

    /** BaseUrlChecker::execute(). */
    private function matches(array $uri): bool
    {
        $requestUri = $this->request->getRequestUri() ?: '/';
        return (!isset($uri['scheme']) || $uri['scheme'] === $this->request->getScheme())
            && (!isset($uri['host']) || $uri['host'] === $this->request->getHttpHost())
            && (!isset($uri['path']) || str_contains($requestUri, (string)$uri['path']));
    }

    /** RequestPreprocessor::isHttpsRedirect() with BaseUrlChecker::isFrontendSecure(). */
    private function isHttpsRedirect(): bool
    {
        $unsecure = (string)($this->config)('web/unsecure/base_url');
        $frontendSecure = $this->flag('web/secure/use_in_frontend') && explode('://', $unsecure)[0] === 'https';
        return $frontendSecure && $this->request->isPost() && !$this->request->isSecure();
    }

    /** Store::isCurrentlySecure(). */
    private function isCurrentlySecure(): bool
    {
        if ($this->request->isSecure()) {
            return true;
        }
        $secureBaseUrl = (string)($this->config)('web/secure/base_url', true);
        if ($secureBaseUrl === '' || !($this->config)('web/secure/use_in_frontend', true)) {
            return false;
        }
        $uri = parse_url($secureBaseUrl) ?: [];
        $port = $this->request->serverPort();
        return ($uri['scheme'] ?? '') === 'https' && $port !== null && isset($uri['port'])
            && (string)$uri['port'] === $port;
    }

    /** Store::getBaseUrl(URL_TYPE_WEB, ...): with a trailing slash. */
    private function baseUrl(string $path): string
    {
        $url = (string)($this->config)($path);
        return $url === '' ? '' : rtrim($url, '/') . '/';
    }

    private function flag(string $path): bool
    {
        return (bool)($this->config)($path);
    }
}
