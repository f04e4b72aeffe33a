<?php
/**
 * maintenance:enable / maintenance:disable (Magento\Backend\Console\Command\
 * AbstractMaintenanceCommand): validate --ip, set the flag in <BP>/var, print the result.
 */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Console\Input;
use FakeMagento\Console\Option;
use FakeMagento\Console\Output;
use FakeMagento\Console\SetupCommand;
use FakeMagento\Maintenance;
use FakeMagento\Shop;

abstract class AbstractMaintenanceCommand extends SetupCommand
{
    abstract protected function isEnable(): bool;

    abstract protected function getDisplayString(): string;

    protected function ownOptions(): array
    {
        return [new Option(
            'ip',
            null,
            Option::REQUIRED | Option::IS_ARRAY,
            "Allowed IP addresses (use 'none' to clear allowed IP list)"
        )];
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        $addresses = (array)$input->getOption('ip');
        $messages = Maintenance::validateIps($addresses, true);
        if ($messages) {
            $output->writeln('<error>' . implode('</error>' . PHP_EOL . '<error>', $messages));
            return self::FAILURE;
        }
        $shop->maintenance()->set($this->isEnable());
        $output->writeln($this->getDisplayString());
        if ($addresses) {
            $list = implode(',', $addresses);
            $shop->maintenance()->setAddresses($list === 'none' ? '' : $list);
            $output->writeln('<info>Set exempt IP-addresses: '
                . (implode(', ', $shop->maintenance()->getAddressInfo()) ?: 'none') . '</info>');
        }
        return self::SUCCESS;
    }
}
