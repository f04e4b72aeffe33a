<?php
/**
 * maintenance:status (2.4 wording: "active" / "not active", no final period, addresses
 * separated by spaces). 2.4.8 says "enabled" / "disabled" instead.
 */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Console\Input;
use FakeMagento\Console\Output;
use FakeMagento\Console\SetupCommand;
use FakeMagento\Shop;

final class MaintenanceStatusCommand extends SetupCommand
{
    public function getDescription(): string
    {
        return 'Displays maintenance mode status';
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        $output->writeln('<info>Status: maintenance mode is '
            . ($shop->maintenance()->isOn() ? 'active' : 'not active') . '</info>');
        $addresses = implode(' ', $shop->maintenance()->getAddressInfo());
        $output->writeln('<info>List of exempt IP-addresses: ' . ($addresses ?: 'none') . '</info>');
        return self::SUCCESS;
    }
}
