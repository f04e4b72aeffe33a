<?php
/**
 * Magento\Config\Model\Config\Structure::getFieldPaths() + the PathValidator config:show
 * and config:set use (Magento\Theme\Model\Config\PathValidator, which also accepts the
 * design configuration paths). Only *field* paths are valid: "web/secure/base_url" is,
 * the group "web/secure" and the section "web" are not (2.4.x; magento/magento2#39610).
 *
 * The fields are those of the system.xml files of the core modules the fake stands in for
 * (a selection: FIELDS below), plus every enabled module's etc/adminhtml/system.xml
 * (section/group/field ids, nested groups, <config_path>; parsed with regexes, the fake
 * must not need php-xml).
 */
declare(strict_types=1);

namespace FakeMagento;

use FakeMagento\Exception\LocalizedException;

final class ConfigStructure
{
    /** section => group => fields (Magento_Backend, Store, Theme, Directory, Catalog...). */
    private const FIELDS = [
        'web' => [
            'url' => ['use_store', 'redirect_to_base'],
            'seo' => ['use_rewrites'],
            'unsecure' => ['base_url', 'base_link_url', 'base_static_url', 'base_media_url'],
            'secure' => [
                'base_url', 'base_link_url', 'base_static_url', 'base_media_url', 'use_in_frontend',
                'use_in_adminhtml', 'enable_hsts', 'enable_upgrade_insecure', 'offloader_header',
            ],
            'default' => ['front', 'no_route', 'cms_home_page', 'cms_no_route', 'cms_no_cookies',
                'show_cms_breadcrumbs'],
            'default_layouts' => ['default_product_layout', 'default_category_layout', 'default_cms_layout'],
            'cookie' => ['cookie_lifetime', 'cookie_path', 'cookie_domain', 'cookie_httponly',
                'cookie_restriction', 'cookie_restriction_lifetime'],
            'session' => ['use_remote_addr', 'use_http_via', 'use_http_x_forwarded_for', 'use_http_user_agent'],
            'browser_capabilities' => ['cookies', 'javascript', 'local_storage'],
        ],
        'general' => [
            'country' => ['default', 'allow', 'optional_zip_countries', 'eu_countries', 'destinations'],
            'locale' => ['code', 'timezone', 'firstday', 'weekend', 'weight_unit'],
            'store_information' => ['name', 'phone', 'hours', 'country_id', 'region_id', 'postcode',
                'city', 'street_line1', 'street_line2', 'merchant_vat_number'],
            'single_store_mode' => ['enabled'],
        ],
        'currency' => ['options' => ['base', 'default', 'allow']],
        'catalog' => [
            'search' => ['engine', 'opensearch_server_hostname', 'opensearch_server_port',
                'opensearch_index_prefix', 'elasticsearch7_server_hostname', 'elasticsearch7_server_port',
                'elasticsearch7_index_prefix'],
            'seo' => ['product_url_suffix', 'category_url_suffix', 'product_use_categories',
                'save_rewrites_history', 'generate_category_product_rewrites'],
            'frontend' => ['list_mode', 'grid_per_page', 'list_per_page', 'flat_catalog_category',
                'flat_catalog_product'],
        ],
        'customer' => [
            'account_share' => ['scope'],
            'online_customers' => ['section_data_lifetime'],
        ],
        'admin' => [
            'url' => ['use_custom', 'custom', 'use_custom_path', 'custom_path'],
            'security' => ['use_form_key', 'session_lifetime', 'admin_account_sharing', 'password_lifetime',
                'password_is_forced', 'lockout_failures', 'lockout_threshold'],
        ],
        'twofactorauth' => ['general' => ['force_providers']],
        'system' => [
            'full_page_cache' => ['caching_application', 'ttl'],
            'smtp' => ['disable', 'host', 'port'],
        ],
        'dev' => [
            'static' => ['sign'],
            'js' => ['merge_files', 'enable_js_bundling', 'minify_files', 'move_script_to_bottom'],
            'css' => ['merge_css_files', 'minify_files', 'use_css_critical_path'],
            'template' => ['minify_html'],
            'grid' => ['async_indexing'],
        ],
        'sales_email' => ['general' => ['async_sending']],
    ];

    /** Nested groups of the core fields above: system/full_page_cache/varnish/... */
    private const NESTED = [
        'system/full_page_cache/varnish' => ['access_list', 'backend_host', 'backend_port', 'grace_period'],
    ];

    /** Magento_Theme's design configuration (design_config_form): valid for config:show too. */
    private const DESIGN = [
        'design/theme/theme_id', 'design/head/default_title', 'design/head/title_prefix',
        'design/head/title_suffix', 'design/head/default_description', 'design/head/default_keywords',
        'design/head/includes', 'design/head/demonotice', 'design/header/logo_src', 'design/header/welcome',
        'design/footer/copyright', 'design/footer/absolute_footer',
        'design/search_engine_robots/default_robots', 'design/search_engine_robots/custom_instructions',
    ];

    /** @var array<string, string>|null structure path => config path */
    private ?array $fields = null;

    /** @param array<string, array{path: string}> $enabledModules ModuleList::enabled() */
    public function __construct(private readonly array $enabledModules)
    {
    }

    /** PathValidator::validate(): throws Magento's ValidatorException message. */
    public function validate(string $path): void
    {
        if (in_array($path, self::DESIGN, true)) {
            return;
        }
        $fields = $this->fields();
        $configPath = $fields[$path] ?? $path; // getElementByConfigPath(): a field's <config_path>
        if (!in_array($configPath, $fields, true)) {
            throw new LocalizedException(sprintf('The "%s" path doesn\'t exist. Verify and try again.', $configPath));
        }
    }

    /** @return array<string, string> structure path => config path (its own path if none) */
    private function fields(): array
    {
        if ($this->fields !== null) {
            return $this->fields;
        }
        $fields = [];
        foreach (self::FIELDS as $section => $groups) {
            foreach ($groups as $group => $ids) {
                foreach ($ids as $id) {
                    $fields["$section/$group/$id"] = "$section/$group/$id";
                }
            }
        }
        foreach (self::NESTED as $group => $ids) {
            foreach ($ids as $id) {
                $fields["$group/$id"] = "$group/$id";
            }
        }
        foreach ($this->enabledModules as $module) {
            $file = $module['path'] . '/etc/adminhtml/system.xml';
            if (is_file($file)) {
                $fields += self::parseSystemXml((string)file_get_contents($file));
            }
        }
        return $this->fields = $fields;
    }

    /** @return array<string, string> the fields of one system.xml: path => config path */
    public static function parseSystemXml(string $xml): array
    {
        $xml = (string)preg_replace('/<!--.*?-->/s', '', $xml);
        preg_match_all(
            '#<(/?)(section|group|field)\b([^>]*?)(/?)>|<config_path>\s*([^<]*?)\s*</config_path>#s',
            $xml,
            $tokens,
            PREG_SET_ORDER
        );
        $stack = [];
        $fields = [];
        $field = null;
        foreach ($tokens as $token) {
            if (($token[5] ?? '') !== '' && $field !== null) {
                $fields[$field] = $token[5];
                continue;
            }
            if (($token[2] ?? '') === '') {
                continue;
            }
            if ($token[1] === '/') {
                array_pop($stack);
                if ($token[2] === 'field') {
                    $field = null;
                }
                continue;
            }
            $id = preg_match('/\bid\s*=\s*"([^"]*)"/', $token[3], $m) ? $m[1] : '';
            $path = implode('/', [...$stack, $id]);
            if ($token[2] === 'field') {
                $fields[$path] = $fields[$path] ?? $path;
                $field = $token[4] === '/' ? null : $path;
            }
            if ($token[4] !== '/') {
                $stack[] = $id;
            }
        }
        return $fields;
    }
}
