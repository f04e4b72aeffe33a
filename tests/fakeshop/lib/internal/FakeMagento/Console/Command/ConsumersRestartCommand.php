<?php
/**
 * queue:consumers:restart (Magento\MessageQueue\Console\RestartConsumerCommand, 2.4.x):
 * PoisonPillPut::put(), no output, exit 0. Running consumers started with --max-messages
 * exit when they take their next message.
 */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Console\Command;
use FakeMagento\Console\Input;
use FakeMagento\Console\Output;
use FakeMagento\Queue;
use FakeMagento\Shop;

final class ConsumersRestartCommand extends Command
{
    public function getDescription(): string
    {
        return 'Restart MessageQueue consumers';
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        (new Queue($shop))->putPill('queue:consumers:restart');
        return self::SUCCESS;
    }
}
