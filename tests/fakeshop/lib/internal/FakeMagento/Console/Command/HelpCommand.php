<?php
/** Symfony's "help" / "--help". */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Console\Application;
use FakeMagento\Console\Argument;
use FakeMagento\Console\Command;
use FakeMagento\Console\Input;
use FakeMagento\Console\Output;
use FakeMagento\Shop;

final class HelpCommand extends Command
{
    public function getDescription(): string
    {
        return 'Display help for a command';
    }

    public function getArguments(): array
    {
        return [new Argument('command_name', false, 'The command name', 'help')];
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        $app = new Application($shop->bp, new \FakeMagento\CommandLog($shop->bp, 0.0, []));
        return $this->describe($app->find((string)$input->getArgument('command_name')), $output);
    }

    public function describe(Command $command, Output $output): int
    {
        $output->writeln(['Description:', '  ' . $command->getDescription(), '', 'Usage:', '  ' . $command->getSynopsis()]);
        if ($command->getOptions()) {
            $output->writeln(['', 'Options:']);
            foreach ($command->getOptions() as $option) {
                $name = ($option->shortcut ? '-' . $option->shortcut . ', ' : '    ') . '--' . $option->name;
                $output->writeln(sprintf('  %-30s %s', $name, $option->description));
            }
        }
        return self::SUCCESS;
    }
}
