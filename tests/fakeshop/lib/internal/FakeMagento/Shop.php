<?php
/** Everything a command or the storefront needs about one release directory (BP). */
declare(strict_types=1);

namespace FakeMagento;

use FakeMagento\Exception\LocalizedException;

final class Shop
{
    public readonly DeploymentConfig $config;
    private ?ModuleList $modules = null;
    private ?Cache $cache = null;
    private ?Maintenance $maintenance = null;
    private ?StaticContent $staticContent = null;
    private ?ConfigState $configState = null;

    public function __construct(public readonly string $bp)
    {
        $this->config = new DeploymentConfig($bp);
    }

    // The parts below are made on first use (like Magento's object manager does), so a
    // command loads only the classes it needs.

    public function modules(): ModuleList
    {
        return $this->modules ??= new ModuleList($this->config);
    }

    public function cache(): Cache
    {
        return $this->cache ??= new Cache($this->bp, $this->config);
    }

    public function maintenance(): Maintenance
    {
        return $this->maintenance ??= new Maintenance($this->bp);
    }

    public function staticContent(): StaticContent
    {
        return $this->staticContent ??= new StaticContent($this->bp);
    }

    public function configState(): ConfigState
    {
        return $this->configState ??= new ConfigState($this->config);
    }

    /**
     * ProductMetadata::getVersion(): with no magento/product-*-edition package installed
     * (none here), the root package's version from composer.json; 'UNKNOWN' without one.
     */
    public function version(): string
    {
        $json = @file_get_contents($this->bp . '/composer.json');
        $root = is_string($json) ? json_decode($json, true) : null;
        return is_array($root) && is_string($root['version'] ?? null) ? $root['version'] : 'UNKNOWN';
    }

    /** The database; Installer::assertDbConfigExists() wording when none is configured. */
    public function db(): Db
    {
        $path = $this->config->dbPath();
        if ($path === null) {
            throw new LocalizedException("Can't run this operation: configuration for DB connection is absent.");
        }
        return new Db($path);
    }

    public function dbStatus(array $db): DbStatus
    {
        return new DbStatus($this->modules()->enabled(), $db);
    }

    /** The release label (app/code/Shop/Catalog/Label.php), '' when absent. */
    public function label(): string
    {
        $file = $this->bp . '/app/code/Shop/Catalog/Label.php';
        return is_file($file) ? (string)(include $file) : '';
    }
}
