<?php
/** maintenance:allow-ips (Magento\Backend\Console\Command\MaintenanceAllowIpsCommand). */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Console\Argument;
use FakeMagento\Console\Input;
use FakeMagento\Console\Option;
use FakeMagento\Console\Output;
use FakeMagento\Console\SetupCommand;
use FakeMagento\Maintenance;
use FakeMagento\Shop;

final class MaintenanceAllowIpsCommand extends SetupCommand
{
    public function getDescription(): string
    {
        return 'Sets maintenance mode exempt IPs';
    }

    public function getArguments(): array
    {
        return [new Argument('ip', true, 'Allowed IP addresses')];
    }

    protected function ownOptions(): array
    {
        return [
            new Option('none', null, Option::NONE, 'Clear allowed IP addresses'),
            new Option('add', null, Option::NONE, 'Add the IP address to existing list'),
        ];
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        if ($input->getOption('none')) {
            $shop->maintenance()->setAddresses('');
            $output->writeln('<info>Set exempt IP-addresses: none</info>');
            return self::SUCCESS;
        }
        $addresses = (array)$input->getArgument('ip');
        $messages = Maintenance::validateIps($addresses, false);
        if ($messages) {
            $output->writeln('<error>' . implode('</error>' . PHP_EOL . '<error>', $messages));
            return self::FAILURE;
        }
        if ($input->getOption('add')) {
            $addresses = array_unique([...$shop->maintenance()->getAddressInfo(), ...$addresses]);
        }
        $shop->maintenance()->setAddresses(implode(',', $addresses));
        $output->writeln('<info>Set exempt IP-addresses: '
            . implode(' ', $shop->maintenance()->getAddressInfo()) . '</info>');
        return self::SUCCESS;
    }
}
