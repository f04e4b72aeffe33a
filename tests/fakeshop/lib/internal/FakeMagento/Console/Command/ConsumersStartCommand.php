<?php
/**
 * queue:consumers:start (Magento\MessageQueue\Console\StartConsumerCommand, 2.4) with
 * Framework\MessageQueue\Consumer::process() and CallbackInvoker::invoke():
 *
 *  - with --max-messages: the poison pill version is read once at start; each message is
 *    taken (waiting `sleep` = 1 s between looks while `queue/consumers_wait_for_messages`
 *    is 1, the default; otherwise the consumer ends when the queue is empty); when the
 *    pill changed meanwhile the message is rejected (back in the queue) and the process
 *    exits 0 -- so an IDLE consumer only notices at its next message;
 *  - without it: the MySQL queue's subscribe() loop (forever, 5 s between looks), which
 *    never looks at the pill;
 *  - --single-thread (or --pid-file-path): "Consumer with the same name is running", exit 1.
 * A test aid records the start (db history "queue:consumers:start <name>", with BP) and
 * every message handled (db `queue_processed`, with BP, pid and release label).
 */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Console\Argument;
use FakeMagento\Console\Command;
use FakeMagento\Console\Input;
use FakeMagento\Console\Option;
use FakeMagento\Console\Output;
use FakeMagento\Exception\ConsoleException;
use FakeMagento\Exception\LocalizedException;
use FakeMagento\Queue;
use FakeMagento\Shop;

final class ConsumersStartCommand extends Command
{
    private const SLEEP = 1;          // ConsumerConfiguration::getSleep() default
    private const SUBSCRIBE_INTERVAL = 5; // MysqlMq\Model\Driver\Queue $interval

    public function getDescription(): string
    {
        return 'Start MessageQueue consumer';
    }

    public function getArguments(): array
    {
        return [new Argument('consumer', false, 'The name of the consumer to be started.')];
    }

    public function getOptions(): array
    {
        return [
            new Option('max-messages', null, Option::REQUIRED, 'The number of messages to be processed by the consumer before process termination. If not specified - terminate after processing all queued messages.'),
            new Option('batch-size', null, Option::REQUIRED, 'The number of messages per batch. Applicable for the batch consumer only.'),
            new Option('area-code', null, Option::REQUIRED, 'The preferred area (global, adminhtml, etc...) default is global.'),
            new Option('single-thread', null, Option::NONE, 'This option prevents running multiple copies of one consumer simultaneously.'),
            new Option('multi-process', null, Option::OPTIONAL, 'The number of processes per consumer.'),
            new Option('pid-file-path', null, Option::REQUIRED, 'The file path for saving PID (This option is deprecated, use --single-thread instead)'),
        ];
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        $name = $input->getArgument('consumer');
        if ($name === null) {
            throw new ConsoleException('Not enough arguments (missing: "consumer").');
        }
        $queue = new Queue($shop);
        $singleThread = $input->getOption('single-thread') || $input->getOption('pid-file-path');
        $multiProcess = $input->getOption('multi-process');
        if ($multiProcess && !$queue->lock(md5($name . '-' . $multiProcess))) {
            $output->writeln('<error>Consumer with the same name is running</error>');
            return self::FAILURE;
        }
        if ($singleThread && !$queue->lock(md5($name))) {
            $output->writeln('<error>Consumer with the same name is running</error>');
            return self::FAILURE;
        }
        $consumers = $queue->consumers();
        if (!isset($consumers[$name])) {
            throw new LocalizedException(sprintf('Specified consumer "%s" is not declared.', $name));
        }
        $queueName = $consumers[$name];
        $shop->db()->update(static fn (array $db): array => $db, 'queue:consumers:start ' . $name, $shop->bp);
        $max = $input->getOption('max-messages');
        if ($max === null) {
            $this->subscribe($queue, $name, $queueName);
        } else {
            $this->invoke($shop, $queue, $name, $queueName, (int)$max);
        }
        return self::SUCCESS;
    }

    /** CallbackInvoker::invoke(). */
    private function invoke(Shop $shop, Queue $queue, string $name, string $queueName, int $max): void
    {
        $version = $queue->pillVersion();
        $wait = (int)$shop->config->get('queue/consumers_wait_for_messages', 1) === 1;
        for ($i = $max; $i > 0; $i--) {
            do {
                $message = $queue->dequeue($queueName);
            } while ($message === null && $wait && (sleep(self::SLEEP) === 0));
            if ($message === null) {
                break;
            }
            if ($queue->pillVersion() !== $version) {
                $queue->reject($queueName, $message);
                return; // Magento: exit(0)
            }
            $queue->acknowledge($name, $queueName, $message);
        }
    }

    /** MysqlMq\Model\Driver\Queue::subscribe(): no end, no poison pill. */
    private function subscribe(Queue $queue, string $name, string $queueName): void
    {
        while (true) {
            while ($message = $queue->dequeue($queueName)) {
                $queue->acknowledge($name, $queueName, $message);
            }
            sleep(self::SUBSCRIBE_INTERVAL);
        }
    }
}
