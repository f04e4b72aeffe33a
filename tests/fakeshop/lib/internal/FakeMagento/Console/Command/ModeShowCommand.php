<?php
/** deploy:mode:show (Magento\Deploy\Console\Command\ShowModeCommand). */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Console\Command;
use FakeMagento\Console\Input;
use FakeMagento\Console\Output;
use FakeMagento\Shop;

final class ModeShowCommand extends Command
{
    public function getDescription(): string
    {
        return 'Displays current application mode.';
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        $output->writeln('Current application mode: ' . $shop->config->mode()
            . '. (Note: Environment variables may override this value.)');
        return self::SUCCESS;
    }
}
