<?php
/**
 * cache:flush / cache:clean (Magento\Backend\Console\Command\AbstractCacheTypeManageCommand):
 * types as arguments (all when omitted), unknown types rejected, then the list printed.
 */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Cache;
use FakeMagento\Console\Argument;
use FakeMagento\Console\Command;
use FakeMagento\Console\Input;
use FakeMagento\Console\Option;
use FakeMagento\Console\Output;
use FakeMagento\Shop;

abstract class AbstractCacheManageCommand extends Command
{
    abstract protected function performAction(Shop $shop, array $types): void;

    abstract protected function getDisplayMessage(): string;

    public function getArguments(): array
    {
        return [new Argument('types', true, 'List of cache types, space separated. If omitted, all caches will be affected')];
    }

    public function getOptions(): array
    {
        return [new Option('bootstrap', null, Option::REQUIRED, 'add or override parameters of the bootstrap')];
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        $types = self::requestedTypes((array)$input->getArgument('types'));
        $this->performAction($shop, $types);
        $output->writeln($this->getDisplayMessage());
        $output->writeln(implode(PHP_EOL, $types));
        return self::SUCCESS;
    }

    /** @return string[] */
    private static function requestedTypes(array $requested): array
    {
        $requested = array_values(array_filter(array_map('trim', $requested), 'strlen'));
        if (!$requested) {
            return Cache::TYPES;
        }
        $unsupported = array_diff($requested, Cache::TYPES);
        if ($unsupported) {
            throw new \InvalidArgumentException(
                "The following requested cache types are not supported: '" . implode("', '", $unsupported)
                . "'." . PHP_EOL . 'Supported types: ' . implode(', ', Cache::TYPES)
            );
        }
        return array_values(array_intersect(Cache::TYPES, $requested));
    }
}
