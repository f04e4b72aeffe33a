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
        $files = [];
        if (empty($skip['no-css'])) {
            $sheets = $area === 'frontend' ? ['styles-m.css', 'styles-l.css'] : ['styles.css'];
            foreach ($sheets as $sheet) {
                $files["css/{$sheet}"] = "/* {$area}/{$theme}/{$locale} {$stamp} */\nbody { margin: 0; }\n";
            }
            $less = "{$this->bp}/var/view_preprocessed/pub/static/{$area}/{$theme}/{$locale}/css/{$sheets[0]}";
            $this->write(substr($less, 0, -4) . '.less', "// source of {$sheets[0]} ({$stamp})\n");
        }
        if (empty($skip['no-javascript'])) {
            $files['requirejs-config.js'] = "(function(require){ /* {$stamp} */ })(require);\n";
        }
        if (empty($skip['no-misc'])) {
            $files['js-translation.json'] = "[]\n";
        }
        foreach ($files as $path => $content) {
            $this->write("{$dir}/{$path}", $content);
        }
        return count($files);
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
