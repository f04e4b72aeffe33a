<?php
/**
 * setup:db:status (Magento\Setup\Console\Command\DbStatusCommand): exit 0 "All modules are
 * up to date.", exit 2 with the validators' messages and "Run 'setup:upgrade' ...", exit 1
 * "No information is available: the Magento application is not installed.".
 */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Console\Input;
use FakeMagento\Console\Output;
use FakeMagento\Console\SetupCommand;
use FakeMagento\Shop;

final class DbStatusCommand extends SetupCommand
{
    public const EXIT_CODE_UPGRADE_REQUIRED = 2;

    public function getDescription(): string
    {
        return 'Checks if DB schema or data requires upgrade';
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        if (!$shop->config->isAvailable()) {
            $output->writeln('<info>No information is available: the Magento application is not installed.</info>');
            return self::FAILURE;
        }
        $messages = $shop->dbStatus($shop->db()->read())->statusMessages();
        if ($messages) {
            foreach ($messages as $message) {
                $output->writeln('<info>' . $message . '</info>');
            }
            $output->writeln('<info>Run \'setup:upgrade\' to update your DB schema and data.</info>');
            return self::EXIT_CODE_UPGRADE_REQUIRED;
        }
        $output->writeln('<info>All modules are up to date.</info>');
        return self::SUCCESS;
    }
}
