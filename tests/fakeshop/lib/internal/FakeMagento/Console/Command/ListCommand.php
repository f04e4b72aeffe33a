<?php
/** Symfony's "list" (also what bare "bin/magento" runs). */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Console\Application;
use FakeMagento\Console\Argument;
use FakeMagento\Console\Command;
use FakeMagento\Console\Input;
use FakeMagento\Console\Output;
use FakeMagento\Shop;

final class ListCommand extends Command
{
    public function getDescription(): string
    {
        return 'List commands';
    }

    public function getArguments(): array
    {
        return [new Argument('namespace', false, 'The namespace name')];
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        $output->writeln([
            Application::NAME . ' ' . $shop->version(), '', 'Usage:', '  command [options] [arguments]', '',
            'Options:',
            '  -h, --help            Display help for the given command.',
            '  -q, --quiet           Do not output any message',
            '  -V, --version         Display this application version',
            '      --ansi|--no-ansi  Force (or disable --no-ansi) ANSI output',
            '  -n, --no-interaction  Do not ask any interactive question',
            '  -v|vv|vvv, --verbose  Increase the verbosity of messages',
            '', 'Available commands:',
        ]);
        $namespace = (string)$input->getArgument('namespace');
        $current = null;
        $commands = (new Application($shop->bp, new \FakeMagento\CommandLog($shop->bp, 0.0, [])))->commands();
        uksort($commands, static fn ($a, $b) => [str_contains($a, ':'), $a] <=> [str_contains($b, ':'), $b]);
        foreach ($commands as $name => $command) {
            if ($namespace !== '' && !str_starts_with($name, $namespace . ':')) {
                continue;
            }
            $group = str_contains($name, ':') ? explode(':', $name)[0] : '';
            if ($group !== $current && $group !== '') {
                $output->writeln(' ' . $group);
            }
            $current = $group;
            $output->writeln(sprintf('  %-40s %s', $name, $command->getDescription()));
        }
        return self::SUCCESS;
    }
}
