<?php
/**
 * Magento's MySQL message queue, consumers and poison pill, on the fake database.
 *
 *  - consumers: declared by enabled modules in etc/queue_consumer.xml
 *    (`<consumer name="..." queue="..."/>`), like Magento\Framework\MessageQueue\Consumer\Config;
 *  - messages: db `queue_message` {queue: [{id, body}]}, taken first in first out;
 *    a processed message is appended to `queue_processed` with the BP, pid and release
 *    label of the consumer that handled it (a test aid: which code processed it);
 *  - poison pill: db `queue_poison_pill` (Magento's table of the same name). put() stores
 *    a new version (queue:consumers:restart, setup:upgrade's MessageQueue Recurring);
 *  - locks: Magento's LockManager (MySQL GET_LOCK, released when the process dies) is an
 *    flock on `<dbname>.lock-<md5>` next to the database, held for the process' life.
 */
declare(strict_types=1);

namespace FakeMagento;

final class Queue
{
    /** @var array<string, resource> locks this process holds */
    private array $held = [];

    public function __construct(private readonly Shop $shop)
    {
    }

    /** @return array<string, string> consumer name => queue name, of the enabled modules */
    public function consumers(): array
    {
        $found = [];
        foreach ($this->shop->modules()->enabled() as $module) {
            $file = $module['path'] . '/etc/queue_consumer.xml';
            if (!is_file($file)) {
                continue;
            }
            preg_match_all('/<consumer\s[^>]*>/', (string)file_get_contents($file), $tags);
            foreach ($tags[0] as $tag) {
                if (preg_match('/\sname="([^"]+)"/', $tag, $name)) {
                    $queue = preg_match('/\squeue="([^"]+)"/', $tag, $q) ? $q[1] : $name[1];
                    $found[$name[1]] = $queue;
                }
            }
        }
        return $found;
    }

    /** PoisonPillRead::getLatestVersion(). */
    public function pillVersion(): string
    {
        return (string)($this->shop->db()->read()['queue_poison_pill'] ?? '');
    }

    /** PoisonPillPut::put(): a new version, so every running consumer's one is old. */
    public function putPill(string $event): string
    {
        $version = self::newVersion();
        $this->shop->db()->update(static function (array $db) use ($version): array {
            $db['queue_poison_pill'] = $version;
            return $db;
        }, $event, $this->shop->bp);
        return $version;
    }

    public static function newVersion(): string
    {
        return bin2hex(random_bytes(8));
    }

    public function hasMessages(string $queue): bool
    {
        return !empty($this->shop->db()->read()['queue_message'][$queue]);
    }

    /** @return array<string, mixed>|null the oldest message of $queue, taken off it */
    public function dequeue(string $queue): ?array
    {
        $taken = null;
        $this->shop->db()->update(static function (array $db) use ($queue, &$taken): array {
            $messages = $db['queue_message'][$queue] ?? [];
            if ($messages) {
                $taken = array_shift($messages);
                $db['queue_message'][$queue] = $messages;
            }
            return $db;
        }, 'dequeue ' . $queue, $this->shop->bp);
        return $taken;
    }

    /** Queue::reject() with requeue (the default): the message goes back, first in line. */
    public function reject(string $queue, array $message): void
    {
        $this->shop->db()->update(static function (array $db) use ($queue, $message): array {
            $db['queue_message'][$queue] = [$message, ...($db['queue_message'][$queue] ?? [])];
            return $db;
        }, 'reject ' . $queue, $this->shop->bp);
    }

    /** The consumer's handler ran: record who processed it (Queue::acknowledge()). */
    public function acknowledge(string $consumer, string $queue, array $message): void
    {
        $record = [
            'id' => $message['id'] ?? null, 'body' => $message['body'] ?? null, 'queue' => $queue,
            'consumer' => $consumer, 'bp' => $this->shop->bp, 'label' => $this->shop->label(),
            'pid' => getmypid(), 't' => microtime(true),
        ];
        $this->shop->db()->update(static function (array $db) use ($record): array {
            $db['queue_processed'][] = $record;
            return $db;
        }, 'processed ' . $queue, $this->shop->bp);
    }

    /** LockManagerInterface::lock($name, 0): false when another process holds it. */
    public function lock(string $name): bool
    {
        $handle = @fopen($this->lockFile($name), 'c');
        if ($handle === false) {
            throw new Exception\LocalizedException('Could not acquire lock ' . $name);
        }
        if (!flock($handle, LOCK_EX | LOCK_NB)) {
            fclose($handle);
            return false;
        }
        $this->held[$name] = $handle;
        return true;
    }

    public function unlock(string $name): void
    {
        if (isset($this->held[$name])) {
            flock($this->held[$name], LOCK_UN);
            fclose($this->held[$name]);
            unset($this->held[$name]);
        }
    }

    /** LockManagerInterface::isLocked(). */
    public function isLocked(string $name): bool
    {
        $file = $this->lockFile($name);
        $handle = is_file($file) ? @fopen($file, 'r') : false;
        if ($handle === false) {
            return false;
        }
        $free = flock($handle, LOCK_EX | LOCK_NB);
        if ($free) {
            flock($handle, LOCK_UN);
        }
        fclose($handle);
        return !$free;
    }

    private function lockFile(string $name): string
    {
        $db = $this->shop->config->dbPath()
            ?? throw new Exception\LocalizedException("Can't run this operation: configuration for DB connection is absent.");
        return $db . '.lock-' . $name;
    }
}
