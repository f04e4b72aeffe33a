<?php
/**
 * setup:di:compile (Magento\Setup\Console\Command\DiCompileCommand, 2.4): needs the module
 * list in config.php (not the DB); first cleans the application cache the way Magento's
 * `$objectManager->get(\Magento\Framework\App\Cache::class)->clean()` does (see
 * Cache::cleanAll(): every frontend of env.php's backend, every entry of the configured
 * id prefix; with a shared backend and id_prefix that is the LIVE shop's cache); deletes
 * var/cache and generated/metadata; then writes generated/code (interceptors, factories)
 * and generated/metadata for the enabled modules only.
 */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Console\Input;
use FakeMagento\Console\Output;
use FakeMagento\Console\SetupCommand;
use FakeMagento\Generated;
use FakeMagento\Shop;

final class DiCompileCommand extends SetupCommand
{
    private const OPERATIONS = [
        'Proxies code generation', 'Repositories code generation', 'Service data attributes generation',
        'Application code generator', 'Interceptors generation', 'Area configuration aggregation',
        'Interception cache generation', 'App action list generation', 'Plugin list generation',
    ];

    public function getDescription(): string
    {
        return 'Generates DI configuration and all missing classes that can be auto-generated';
    }

    public function failureStream(): string
    {
        return 'stdout';
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        if (!$shop->config->get('modules')) {
            $output->writeln('You cannot run this command because modules are not enabled. You can enable modules by'
                . ' running the \'module:enable --all\' command.');
            return self::FAILURE;
        }
        $started = microtime(true);
        $shop->cache()->cleanAll();
        Generated::remove($shop->bp . '/var/cache');
        Generated::remove($shop->bp . '/generated/metadata');
        $output->writeln('<info>Compilation was started.</info>');
        $total = count(self::OPERATIONS);
        foreach (self::OPERATIONS as $i => $operation) {
            $output->writeln(sprintf(
                '%s... %d/%d [%s] %3d%% %s %s',
                $operation,
                $i + 1,
                $total,
                str_pad(str_repeat('=', (int)(28 * ($i + 1) / $total)), 28, '-'),
                (int)(100 * ($i + 1) / $total),
                sprintf('%d sec', (int)(microtime(true) - $started)),
                sprintf('%.1f MiB', memory_get_usage(true) / 1048576)
            ));
        }
        (new Generated($shop->bp))->compile($shop->modules()->enabled(), $shop->label());
        $output->writeln('');
        $output->writeln('<info>Generated code and dependency injection configuration successfully.</info>');
        return self::SUCCESS;
    }
}
