<?php
/**
 * Static view files: pub/static/deployed_version.txt (Deployment\Version\Storage\File)
 * and what setup:static-content:deploy writes per area/theme/locale package.
 */
declare(strict_types=1);

namespace FakeMagento;

final class StaticContent
{
    public function __construct(private readonly string $bp)
    {
    }

    public function versionFile(): string
    {
        return $this->bp . '/pub/static/deployed_version.txt';
    }

    public function readVersion(): ?string
    {
        $value = is_file($this->versionFile()) ? @file_get_contents($this->versionFile()) : false;
        return $value === false || $value === '' ? null : $value;
    }

    public function saveVersion(string $version): void
    {
        $this->mkdir(dirname($this->versionFile()));
        file_put_contents($this->versionFile(), $version);
    }

    /**
     * Deployment\Version::getValue() (2.4): the file's value; when it is missing, production
     * fails unless env.php has static_content_on_demand_in_production, other modes write a
     * new timestamp.
     */
    public function storefrontVersion(DeploymentConfig $config): string
    {
        $version = $this->readVersion();
        if ($version !== null) {
            return $version;
        }
        if ($config->mode() === 'production' && !$config->get('static_content_on_demand_in_production')) {
            throw new \UnexpectedValueException(
                'Unable to retrieve deployment version of static files from the file system.'
            );
        }
        $version = (string)time();
        @file_put_contents($this->versionFile(), $version);
        return $version;
    }

    /**
     * Themes present in the code (registration.php + theme.xml), e.g. frontend/Magento/luma.
     * @return list<array{area: string, code: string}>
     */
    public static function themes(): array
    {
        $themes = [];
        foreach (array_keys(ComponentRegistrar::getPaths(ComponentRegistrar::THEME)) as $name) {
            [$area, $code] = explode('/', $name, 2);
            $themes[] = ['area' => $area, 'code' => $code];
        }
        return $themes;
    }

    /**
     * Writes one package (area/theme/locale) like the quick strategy would: the compiled
     * styles, translations and RequireJS config, plus the preprocessed LESS source in
     * var/view_preprocessed. Returns the number of files written.
     * @param array<string, bool> $skip option name => true (no-css, no-javascript, no-misc)
     */
    public function deployPackage(string $area, string $theme, string $locale, string $stamp, array $skip): int
    {
        $dir = "{$this->bp}/pub/static/{$area}/{$theme}/{$locale}";
        $files = self::packageFiles($area, $theme, $locale, $stamp);
        if (!empty($skip['no-css'])) {
            $files = array_filter($files, static fn (string $path): bool => !str_starts_with($path, 'css/'), ARRAY_FILTER_USE_KEY);
        } else {
            $sheet = array_key_first($files);
            $less = "{$this->bp}/var/view_preprocessed/pub/static/{$area}/{$theme}/{$locale}/{$sheet}";
            $this->write(substr($less, 0, -4) . '.less', '// source of ' . basename($sheet) . " ({$stamp})\n");
        }
        if (!empty($skip['no-javascript'])) {
            unset($files['requirejs-config.js']);
        }
        if (!empty($skip['no-misc'])) {
            unset($files['js-translation.json']);
        }
        foreach ($files as $path => $content) {
            $this->write("{$dir}/{$path}", $content);
        }
        return count($files);
    }

    /**
     * The files of one package, path inside it => content: what a theme's sources compile
     * to (styles-m/styles-l for the storefront, styles for the admin).
     * @return array<string, string>
     */
    public static function packageFiles(string $area, string $theme, string $locale, string $stamp): array
    {
        $files = [];
        foreach ($area === 'frontend' ? ['styles-m.css', 'styles-l.css'] : ['styles.css'] as $sheet) {
            $files["css/{$sheet}"] = "/* {$area}/{$theme}/{$locale} {$stamp} */\nbody { margin: 0; }\n";
        }
        $files['requirejs-config.js'] = "(function(require){ /* {$stamp} */ })(require);\n";
        $files['js-translation.json'] = "[]\n";
        return $files;
    }

    /**
     * StaticResource publishing one file on demand (developer/default mode, or production
     * with static_content_on_demand_in_production): writes it to pub/static like the
     * deploy would and returns its path; null when no theme source produces it.
     */
    public function publish(string $area, string $theme, string $locale, string $file, string $stamp): ?string
    {
        $files = self::packageFiles($area, $theme, $locale, $stamp);
        if (!isset($files[$file])) {
            return null;
        }
        $target = "{$this->bp}/pub/static/{$area}/{$theme}/{$locale}/{$file}";
        $this->write($target, $files[$file]);
        return $target;
    }

    private function write(string $file, string $content): void
    {
        $this->mkdir(dirname($file));
        file_put_contents($file, $content);
    }

    private function mkdir(string $dir): void
    {
        if (!is_dir($dir)) {
            mkdir($dir, 0777, true);
        }
    }
}
