<?php
/**
 * cron:install (Magento\Cron\Console\Command\CronInstallCommand, 2.4): writes Magento's
 * block for THIS BP (see FakeMagento\Crontab) into the user's crontab. A block for this
 * BP already there and no --force: "Crontab has already been generated and saved",
 * exit 1. Blocks of other BPs (other releases) are left as they are.
 */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Console\Command;
use FakeMagento\Console\Input;
use FakeMagento\Console\Option;
use FakeMagento\Console\Output;
use FakeMagento\Crontab;
use FakeMagento\Exception\LocalizedException;
use FakeMagento\Shop;

final class CronInstallCommand extends Command
{
    public function getDescription(): string
    {
        return 'Generates and installs crontab for current user';
    }

    public function failureStream(): string
    {
        return 'stdout';
    }

    public function getOptions(): array
    {
        return [
            new Option('force', 'f', Option::NONE, 'Force install tasks'),
            new Option('non-optional', 'd', Option::NONE, 'Install only the non-optional (default) tasks'),
        ];
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        $crontab = new Crontab($shop->bp);
        if ($crontab->getTasks() && !$input->getOption('force')) {
            $output->writeln('<error>Crontab has already been generated and saved</error>');
            return self::FAILURE;
        }
        $tasks = Crontab::tasks();
        if ($input->getOption('non-optional')) {
            $tasks = array_filter($tasks, static fn (array $task) => !$task['optional']);
        }
        try {
            $crontab->saveTasks($tasks);
        } catch (LocalizedException $e) {
            $output->writeln('<error>' . $e->getMessage() . '</error>');
            return self::FAILURE;
        }
        $output->writeln('<info>Crontab has been generated and saved</info>');
        return self::SUCCESS;
    }
}
