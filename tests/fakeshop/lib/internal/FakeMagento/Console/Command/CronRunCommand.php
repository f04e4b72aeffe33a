<?php
/**
 * cron:run (Magento\Cron\Console\Command\CronCommand, 2.4.7).
 *
 * `cron/enabled` = 0 in env.php: "Cron is disabled. Jobs were not run.", exit 0, nothing
 * runs. Otherwise the jobs due run; of those the fake has the one a deploy cares about,
 * Magento_MessageQueue's `consumers_runner` (Model\Cron\ConsumersRunner): for every
 * declared consumer (or those in `cron_consumers_runner/consumers`), unless
 * `cron_consumers_runner/cron_run` is false, its --single-thread lock is held, or (with
 * `queue/only_spawn_when_message_available`, default on) its queue is empty, it starts
 *   <php> <BP>/bin/magento queue:consumers:start <name> --single-thread --max-messages=<N>
 * in the background (N = `cron_consumers_runner/max_messages`, default 10000; 0 = no
 * --max-messages). BP is this release's physical path: cron started from release A
 * starts consumers of release A. "Ran jobs by schedule." is printed only to a terminal.
 * How long the jobs take is the `cron:run` fault's "sleep" (tests hold it running).
 */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Console\Command;
use FakeMagento\Console\Input;
use FakeMagento\Console\Option;
use FakeMagento\Console\Output;
use FakeMagento\Queue;
use FakeMagento\Shop;

final class CronRunCommand extends Command
{
    public function getDescription(): string
    {
        return 'Runs jobs by schedule';
    }

    public function getOptions(): array
    {
        return [
            new Option('group', null, Option::REQUIRED, 'Run jobs only from specified group'),
            new Option('exclude-group', null, Option::OPTIONAL | Option::IS_ARRAY, 'Exclude jobs from the specified group'),
            new Option('bootstrap', null, Option::REQUIRED, 'Add or override parameters of the bootstrap'),
        ];
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        if (!$shop->config->get('cron/enabled', 1)) {
            $output->writeln('<info>Cron is disabled. Jobs were not run.</info>');
            return self::SUCCESS;
        }
        $group = $input->getOption('group');
        $excluded = (array)$input->getOption('exclude-group');
        if (($group === null || $group === 'consumers') && !in_array('consumers', $excluded, true)) {
            $this->runConsumers($shop);
        }
        if (stream_isatty(STDOUT)) {
            $output->writeln('<info>Ran jobs by schedule.</info>');
        }
        return self::SUCCESS;
    }

    private function runConsumers(Shop $shop): void
    {
        if (!$shop->config->get('cron_consumers_runner/cron_run', true)) {
            return;
        }
        $maxMessages = (int)$shop->config->get('cron_consumers_runner/max_messages', 10000);
        $allowed = (array)$shop->config->get('cron_consumers_runner/consumers', []);
        $onlyWithMessages = (bool)$shop->config->get('queue/only_spawn_when_message_available', true);
        $queue = new Queue($shop);
        foreach ($queue->consumers() as $name => $queueName) {
            if ($allowed && !in_array($name, $allowed, true)) {
                continue;
            }
            if ($onlyWithMessages && !$queue->hasMessages($queueName)) {
                continue;
            }
            if ($queue->isLocked(md5($name))) {
                continue;
            }
            $arguments = [$name, '--single-thread'];
            if ($maxMessages) {
                $arguments[] = '--max-messages=' . $maxMessages;
            }
            // Magento\Framework\Shell with CommandRendererBackground: nohup ... &
            $command = PHP_BINARY . ' ' . $shop->bp . '/bin/magento queue:consumers:start '
                . implode(' ', array_map('escapeshellarg', $arguments));
            exec('nohup ' . $command . ' > /dev/null 2>&1 &');
        }
    }
}
