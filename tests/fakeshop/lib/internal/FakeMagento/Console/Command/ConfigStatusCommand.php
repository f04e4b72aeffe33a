<?php
/** app:config:status (Magento\Deploy\Console\Command\App\ConfigStatusCommand): exit 0 or 2. */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Console\Command;
use FakeMagento\Console\Input;
use FakeMagento\Console\Output;
use FakeMagento\Shop;

final class ConfigStatusCommand extends Command
{
    public const EXIT_CODE_CONFIG_IMPORT_REQUIRED = 2;

    public function getDescription(): string
    {
        return 'Checks if config propagation requires update';
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        if ($shop->configState()->hasChanges($shop->db()->read())) {
            $output->writeln(
                '<info>Config files have changed. '
                . 'Run app:config:import or setup:upgrade command to synchronize configuration.</info>'
            );
            return self::EXIT_CODE_CONFIG_IMPORT_REQUIRED;
        }
        $output->writeln('<info>Config files are up to date.</info>');
        return self::SUCCESS;
    }
}
