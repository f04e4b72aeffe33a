<?php
/**
 * Symfony ConsoleOutput, undecorated: normal output on stdout (style tags such as
 * <info> stripped), exceptions rendered as Symfony's error block on stderr.
 */
declare(strict_types=1);

namespace FakeMagento\Console;

final class Output
{
    public const QUIET = 0;
    public const NORMAL = 1;
    public const VERBOSE = 2;
    public const VERY_VERBOSE = 3;
    public const DEBUG = 4;

    public function __construct(public readonly int $verbosity = self::NORMAL)
    {
    }

    /** @param string|string[] $messages */
    public function writeln(string|array $messages, int $level = self::NORMAL): void
    {
        if ($level > $this->verbosity) {
            return;
        }
        foreach ((array)$messages as $message) {
            fwrite(STDOUT, self::strip($message) . PHP_EOL);
        }
    }

    public function write(string $message, int $level = self::NORMAL): void
    {
        if ($level <= $this->verbosity) {
            fwrite(STDOUT, self::strip($message));
        }
    }

    private static function strip(string $message): string
    {
        return (string)preg_replace('#</?(?:info|error|comment|question)>#', '', $message);
    }

    /**
     * Application::renderThrowable() for undecorated output: the message in a padded block,
     * split at the terminal width (COLUMNS, else 80) like Symfony does, then the running
     * command's synopsis. Shown even with --quiet.
     */
    public function renderThrowable(\Throwable $e, ?string $synopsis): void
    {
        $width = (int)(getenv('COLUMNS') ?: 80) - 1;
        $lines = [];
        $len = 0;
        foreach (preg_split('/\r?\n/', trim($e->getMessage())) ?: [] as $line) {
            foreach (mb_str_split($line === '' ? ' ' : $line, max(1, $width - 4)) as $chunk) {
                $lines[] = $chunk;
                $len = max($len, mb_strlen($chunk) + 4);
            }
        }
        $empty = str_repeat(' ', $len);
        $text = PHP_EOL . $empty . PHP_EOL;
        foreach ($lines as $line) {
            $text .= '  ' . $line . '  ' . str_repeat(' ', $len - mb_strlen($line) - 4) . PHP_EOL;
        }
        $text .= $empty . PHP_EOL . PHP_EOL;
        if ($synopsis !== null) {
            $text .= $synopsis . PHP_EOL . PHP_EOL;
        }
        fwrite(STDERR, $text);
    }
}
