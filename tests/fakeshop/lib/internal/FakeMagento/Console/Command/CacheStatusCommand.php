<?php
/** cache:status: every type enabled (the fake has no cache_types switch). */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Cache;
use FakeMagento\Console\Command;
use FakeMagento\Console\Input;
use FakeMagento\Console\Option;
use FakeMagento\Console\Output;
use FakeMagento\Shop;

final class CacheStatusCommand extends Command
{
    public function getDescription(): string
    {
        return 'Checks cache status';
    }

    public function getOptions(): array
    {
        return [new Option('bootstrap', null, Option::REQUIRED, 'add or override parameters of the bootstrap')];
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        $output->writeln('Current status:');
        foreach (Cache::TYPES as $type) {
            $output->writeln(sprintf('%30s: %d', $type, 1));
        }
        return self::SUCCESS;
    }
}
