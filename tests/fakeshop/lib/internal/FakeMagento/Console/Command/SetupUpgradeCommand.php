<?php
/**
 * setup:upgrade (Magento\Setup\Console\Command\UpgradeCommand + Setup\Model\Installer):
 *  1. flush the config cache storage, clean all cache types;
 *  2. without --keep-generated: empty generated/code, generated/metadata, pub/static
 *     (dot files kept) and var/view_preprocessed of THIS release;
 *  3. rewrite app/etc/config.php 'modules' (every module in the code, new ones enabled);
 *  4. schema then data: every enabled module's setup_version is written to setup_module
 *     (also when the DB was newer: Magento 2.4 records the code's version), patches and
 *     declarative schema applied;
 *     MessageQueue's Recurring schema step puts a new poison pill version;
 *  5. app:config:import (stores the config hash);
 *  6. production mode without --keep-generated: "Please re-run Magento compile command".
 * Any error: "<error>message</error>" on stdout and exit 1 (the command catches it).
 */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Cache;
use FakeMagento\Console\Input;
use FakeMagento\Console\Option;
use FakeMagento\Console\Output;
use FakeMagento\Console\SetupCommand;
use FakeMagento\Exception\LocalizedException;
use FakeMagento\Generated;
use FakeMagento\ModuleList;
use FakeMagento\PhpFormatter;
use FakeMagento\Queue;
use FakeMagento\Shop;

final class SetupUpgradeCommand extends SetupCommand
{
    /** Installer::installDataFixtures() disables these page-level caches meanwhile. */
    private const FRONTEND_CACHES = ['layout', 'block_html', 'full_page'];

    public function getDescription(): string
    {
        return 'Upgrades the Magento application, DB data, and schema';
    }

    protected function ownOptions(): array
    {
        return [
            new Option('keep-generated', null, Option::NONE, 'Prevents generated files from being deleted.'),
            new Option('convert-old-scripts', null, Option::OPTIONAL, 'Allows to convert old scripts', false),
            new Option('safe-mode', null, Option::OPTIONAL, 'Safe installation of Magento with dumps'),
            new Option('data-restore', null, Option::OPTIONAL, 'Restore removed data from dumps'),
            new Option('dry-run', null, Option::OPTIONAL, 'Magento Installation will be run in dry-run mode', false),
        ];
    }

    public function failureStream(): string
    {
        return 'stdout';
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        $keepGenerated = (bool)$input->getOption('keep-generated');
        try {
            $this->updateModulesSequence($shop, $output, $keepGenerated);
            $db = $shop->db();
            $db->read(); // connection check before any output of the DB phase
            $shop->cache()->clean(Cache::TYPES); // Installer::removeUnusedTriggers()
            $output->writeln('Cache cleared successfully');
            $this->installSchema($shop, $output);
            $this->installData($shop, $output);
            if (ConfigImportCommand::import($shop, $output) !== self::SUCCESS) {
                throw new LocalizedException('app:config:import failed. See previous output.');
            }
            if (!$keepGenerated && $shop->config->mode() === 'production') {
                $output->writeln(
                    '<info>Please re-run Magento compile command. Use the command "setup:di:compile"</info>'
                );
            }
        } catch (\Exception $e) {
            $output->writeln('<error>' . $e->getMessage() . '</error>');
            return self::FAILURE;
        }
        return self::SUCCESS;
    }

    private function updateModulesSequence(Shop $shop, Output $output, bool $keepGenerated): void
    {
        if (!$shop->config->get('modules')) {
            throw new LocalizedException(
                "Can't run this operation: deployment configuration is absent."
                . " Run 'magento setup:config:set --help' for options."
            );
        }
        $shop->cache()->flush(['config']);
        $output->writeln('Cache types config flushed successfully');
        $shop->cache()->clean(Cache::TYPES);
        $output->writeln('Cache cleared successfully');
        if (!$keepGenerated) {
            $output->writeln('File system cleanup:');
            $output->writeln((new Generated($shop->bp))->clearCodeGeneratedFiles());
        }
        $output->writeln('Updating modules:');
        $this->writeModulesConfig($shop);
    }

    /** Installer::createModulesConfig(): all code modules, explicit 0 flags kept. */
    private function writeModulesConfig(Shop $shop): void
    {
        $config = $shop->config->configFile();
        $current = is_array($config['modules'] ?? null) ? $config['modules'] : [];
        $modules = [];
        foreach (array_keys($shop->modules()->codeModules()) as $name) {
            $modules[$name] = isset($current[$name]) && !$current[$name] ? 0 : 1;
        }
        $config['modules'] = $modules;
        $file = $shop->bp . '/app/etc/config.php';
        $text = PhpFormatter::format($config);
        if (@file_get_contents($file) !== $text) {
            file_put_contents($file, $text);
        }
        $shop->config->reload();
    }

    private function installSchema(Shop $shop, Output $output): void
    {
        $modules = $shop->modules()->enabled();
        $output->writeln('Schema creation/updates:');
        $shop->db()->update(static function (array $db) use ($modules): array {
            foreach ($modules as $name => $module) {
                if ($module['setup_version'] !== null) {
                    $db['setup_module'][$name]['schema_version'] = $module['setup_version'];
                }
                $hash = ModuleList::schemaHash($module['path']);
                if ($hash === null) {
                    unset($db['declarative_schema'][$name]);
                } else {
                    $db['declarative_schema'][$name] = $hash;
                }
                $db = self::applyPatches($db, $name, $module['path'], 'Schema');
            }
            // Magento\MessageQueue\Setup\Recurring: a new poison pill version, so running
            // consumers (old code) exit at their next message.
            $db['queue_poison_pill'] = Queue::newVersion();
            return $db;
        }, 'setup:upgrade schema', $shop->bp);
        $this->logModules($output, $modules);
        $output->writeln('Schema post-updates:');
        $this->logModules($output, $modules);
    }

    private function installData(Shop $shop, Output $output): void
    {
        $modules = $shop->modules()->enabled();
        $output->writeln('Data install/update:');
        $output->writeln('Disabling caches:');
        $this->logCacheStatus($output, 0);
        $shop->db()->update(static function (array $db) use ($modules): array {
            foreach ($modules as $name => $module) {
                if ($module['setup_version'] !== null) {
                    $db['setup_module'][$name]['data_version'] = $module['setup_version'];
                }
                $db = self::applyPatches($db, $name, $module['path'], 'Data');
            }
            return $db;
        }, 'setup:upgrade data', $shop->bp);
        $this->logModules($output, $modules);
        $output->writeln('Data post-updates:');
        $this->logModules($output, $modules);
        $output->writeln('Enabling caches:');
        $shop->cache()->clean(self::FRONTEND_CACHES);
        $this->logCacheStatus($output, 1);
    }

    private static function applyPatches(array $db, string $name, string $path, string $kind): array
    {
        $applied = $db['patch_list'] ?? [];
        foreach (ModuleList::patches($name, $path, $kind) as $patch) {
            if (!in_array($patch, $applied, true)) {
                $applied[] = $patch;
            }
        }
        $db['patch_list'] = $applied;
        return $db;
    }

    private function logModules(Output $output, array $modules): void
    {
        foreach (array_keys($modules) as $name) {
            $output->writeln("Module '{$name}':");
        }
    }

    private function logCacheStatus(Output $output, int $status): void
    {
        $output->writeln('Current status:');
        foreach (self::FRONTEND_CACHES as $type) {
            $output->writeln(sprintf('%s: %d', $type, $status));
        }
    }
}
