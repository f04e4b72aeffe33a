<?php
/**
 * Test hook (not Magento behaviour): one JSON line per bin/magento invocation.
 *
 * bin/magento requires this file directly, before app/bootstrap.php, so that even an
 * invocation that dies in the bootstrap (no vendor/, PHP fatal error) is logged. The
 * line is appended at shutdown, when the exit code is known; t_start is when the
 * process started. The path comes from env.php: 'fake' => ['command_log' => '/abs/path'].
 */
declare(strict_types=1);

namespace FakeMagento;

final class CommandLog
{
    private ?int $exitCode = null;
    private ?string $command = null;
    private bool $written = false;

    /** @param string[] $argv arguments after "bin/magento" */
    public function __construct(
        private readonly string $bp,
        private readonly float $tStart,
        private readonly array $argv
    ) {
    }

    /** The canonical command name (aliases and abbreviations resolved). */
    public function setCommand(?string $name): void
    {
        $this->command = $name;
    }

    public function setExitCode(int $code): void
    {
        $this->exitCode = $code;
    }

    /** Shutdown function: writes the line once. */
    public function finish(): void
    {
        if ($this->written) {
            return;
        }
        $this->written = true;
        $path = self::configuredPath($this->bp);
        if ($path === null) {
            return;
        }
        self::append($path, [
            't' => microtime(true),
            't_start' => $this->tStart,
            'cmd' => $this->command ?? $this->guessCommand(),
            'argv' => $this->argv,
            'bp' => $this->bp,
            'exit' => $this->exitCode ?? $this->crashCode(),
            'pid' => getmypid(),
            'host' => (string)gethostname(),
            'user' => self::userName(),
        ]);
    }

    /** Exit code when the application never reported one (bootstrap exit or fatal error). */
    private function crashCode(): int
    {
        $error = error_get_last();
        $fatal = E_ERROR | E_PARSE | E_CORE_ERROR | E_COMPILE_ERROR | E_USER_ERROR;
        return ($error !== null && ($error['type'] & $fatal)) ? 255 : 1;
    }

    private function guessCommand(): ?string
    {
        foreach ($this->argv as $arg) {
            if ($arg !== '' && $arg[0] !== '-') {
                return $arg;
            }
        }
        return null;
    }

    private static function userName(): string
    {
        if (function_exists('posix_geteuid') && function_exists('posix_getpwuid')) {
            $info = posix_getpwuid(posix_geteuid());
            if (is_array($info)) {
                return $info['name'];
            }
        }
        return (string)get_current_user();
    }

    public static function configuredPath(string $bp): ?string
    {
        $envFile = $bp . '/app/etc/env.php';
        if (!is_file($envFile)) {
            return null;
        }
        $env = include $envFile;
        $path = is_array($env) ? ($env['fake']['command_log'] ?? null) : null;
        return is_string($path) && $path !== '' ? $path : null;
    }

    /** @param array<string, mixed> $record */
    public static function append(string $path, array $record): void
    {
        $line = json_encode($record, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE) . "\n";
        $handle = @fopen($path, 'ab');
        if ($handle === false) {
            fwrite(STDERR, "[fake] cannot write command log {$path}\n");
            return;
        }
        flock($handle, LOCK_EX);
        fwrite($handle, $line);
        fflush($handle);
        flock($handle, LOCK_UN);
        fclose($handle);
    }
}
