<?php
/**
 * Magento\Framework\Crontab\CrontabManager (2.4) with Magento_Cron's one task
 * (TasksProvider "cronMagento"). The block is keyed by sha256(BP), BP being the physical
 * release directory, so `cron:install` run through `current` still pins that release:
 *
 *   #~ MAGENTO START <sha256(BP)>
 *   * * * * * <PHP_BINARY> <BP>/bin/magento cron:run 2>&1 | grep -v "Ran jobs by schedule" >> <BP>/var/log/magento.cron.log
 *   #~ MAGENTO END <sha256(BP)>
 *
 * Read with `crontab -l 2>/dev/null` through exec() (lines right-trimmed, joined by
 * PHP_EOL, an error read as an empty crontab) and written with
 * `echo "<content>" | crontab -` (so one more newline at the end), as Magento does.
 */
declare(strict_types=1);

namespace FakeMagento;

use FakeMagento\Exception\LocalizedException;

final class Crontab
{
    public const TASKS_BLOCK_START = '#~ MAGENTO START';
    public const TASKS_BLOCK_END = '#~ MAGENTO END';

    public function __construct(private readonly string $bp)
    {
    }

    public function blockStart(): string
    {
        return self::TASKS_BLOCK_START . ' ' . hash('sha256', $this->bp);
    }

    public function blockEnd(): string
    {
        return self::TASKS_BLOCK_END . ' ' . hash('sha256', $this->bp);
    }

    /** @return string[] the task lines of this BP's block ([] when there is none) */
    public function getTasks(): array
    {
        $pattern = '!(' . $this->blockStart() . ')(.*?)(' . $this->blockEnd() . ')!s';
        if (preg_match($pattern, $this->content(), $matches)) {
            return explode(PHP_EOL, trim($matches[2], PHP_EOL));
        }
        return [];
    }

    /** @return array<string, array{command: string, optional: bool}> Magento_Cron's tasks */
    public static function tasks(): array
    {
        return ['cronMagento' => [
            'command' => '{magentoRoot}bin/magento cron:run 2>&1 | grep -v "Ran jobs by schedule"'
                . ' >> {magentoLog}magento.cron.log',
            'optional' => false,
        ]];
    }

    /** CrontabManager::saveTasks(). */
    public function saveTasks(array $tasks): void
    {
        if (!$tasks) {
            throw new LocalizedException('The list of tasks is empty. Add tasks and try again.');
        }
        $lines = '';
        foreach ($tasks as $task) {
            $command = str_replace(
                ['{magentoRoot}', '{magentoLog}'],
                [$this->bp . '/', $this->bp . '/var/log/'],
                $task['command']
            );
            $lines .= ($task['expression'] ?? '* * * * *') . ' ' . PHP_BINARY . ' ' . $command . PHP_EOL;
        }
        $content = $this->content();
        $content = (string)preg_replace(
            '!' . preg_quote($this->blockStart()) . '.*?' . preg_quote($this->blockEnd() . PHP_EOL) . '!s',
            '',
            $content
        );
        if (substr($content, -strlen(PHP_EOL)) !== PHP_EOL) {
            $content .= PHP_EOL;
        }
        $content .= $this->blockStart() . PHP_EOL . $lines . $this->blockEnd() . PHP_EOL;
        $this->save($content);
    }

    private function content(): string
    {
        exec('crontab -l 2>/dev/null', $output, $code);
        return $code === 0 ? implode(PHP_EOL, $output) : '';
    }

    private function save(string $content): void
    {
        $escaped = str_replace(['"', '$', '`'], ['\"', '\$', '\`'], $content);
        exec('echo "' . $escaped . '" | crontab - 2>&1', $output, $code);
        if ($code !== 0) {
            throw new LocalizedException('Error during saving of crontab: ' . implode(PHP_EOL, $output));
        }
    }
}
