<?php
/** module:status (Magento\Setup\Console\Command\ModuleStatusCommand), without filters. */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Console\Input;
use FakeMagento\Console\Output;
use FakeMagento\Console\SetupCommand;
use FakeMagento\Shop;

final class ModuleStatusCommand extends SetupCommand
{
    public function getDescription(): string
    {
        return 'Displays status of modules';
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        $enabled = $shop->modules()->enabledNames();
        $disabled = array_values(array_diff(array_keys($shop->modules()->codeModules()), $enabled));
        $output->writeln(['<info>List of enabled modules:</info>', ...($enabled ?: ['None']), '']);
        $output->writeln(['<info>List of disabled modules:</info>', ...($disabled ?: ['None'])]);
        return self::SUCCESS;
    }
}
