<?php
/**
 * Magento\Framework\Console\Cli (a Symfony Console Application): command lookup with
 * aliases and abbreviations ("s:up", "c:f"), Symfony's "not defined" / "namespace" /
 * "ambiguous" errors, global options, exit codes, plus the fake's test hooks (command
 * log, faults).
 */
declare(strict_types=1);

namespace FakeMagento\Console;

use FakeMagento\CommandLog;
use FakeMagento\Exception\ConsoleException;
use FakeMagento\Faults;
use FakeMagento\Shop;

final class Application
{
    public const NAME = 'Magento CLI';

    /**
     * The commands, name => class, registered like Symfony's lazy command loader
     * (FactoryCommandLoader) does: a command's class is loaded only when that command runs
     * (`list` loads them all), so a bin/magento run compiles little more than it needs.
     *
     * The setup commands (and app:config:import) exist before Magento is installed.
     */
    private const SETUP_COMMANDS = [
        'help' => Command\HelpCommand::class,
        'list' => Command\ListCommand::class,
        'app:config:import' => Command\ConfigImportCommand::class,
        'maintenance:allow-ips' => Command\MaintenanceAllowIpsCommand::class,
        'maintenance:disable' => Command\MaintenanceDisableCommand::class,
        'maintenance:enable' => Command\MaintenanceEnableCommand::class,
        'maintenance:status' => Command\MaintenanceStatusCommand::class,
        'module:status' => Command\ModuleStatusCommand::class,
        'setup:db:status' => Command\DbStatusCommand::class,
        'setup:di:compile' => Command\DiCompileCommand::class,
        'setup:static-content:deploy' => Command\StaticContentDeployCommand::class,
        'setup:upgrade' => Command\SetupUpgradeCommand::class,
    ];

    /** Commands registered by modules (di.xml): they exist only once Magento is installed. */
    private const MODULE_COMMANDS = [
        'app:config:status' => Command\ConfigStatusCommand::class,
        'cache:clean' => Command\CacheCleanCommand::class,
        'cache:flush' => Command\CacheFlushCommand::class,
        'cache:status' => Command\CacheStatusCommand::class,
        'config:show' => Command\ConfigShowCommand::class,
        'cron:install' => Command\CronInstallCommand::class,
        'cron:run' => Command\CronRunCommand::class,
        'deploy:mode:show' => Command\ModeShowCommand::class,
        'queue:consumers:restart' => Command\ConsumersRestartCommand::class,
        'queue:consumers:start' => Command\ConsumersStartCommand::class,
    ];

    /** alias => command name, in the order of the commands' names */
    private const ALIASES = ['c:c' => 'cache:clean', 'c:f' => 'cache:flush', 'c:s' => 'cache:status'];

    private readonly Shop $shop;

    public function __construct(string $bp, private readonly CommandLog $log)
    {
        $this->shop = new Shop($bp);
    }

    /** @param string[] $tokens argv after "bin/magento"; returns the exit code. */
    public function run(array $tokens): int
    {
        $output = new Output(self::verbosity($tokens));
        $name = self::commandName($tokens);
        if ($name === null && array_intersect($tokens, ['-V', '--version'])) {
            $output->writeln(self::NAME . ' ' . $this->shop->version());
            return $this->done(null, Command::SUCCESS);
        }
        $name ??= 'list';
        $command = null;
        try {
            $command = $this->find($name);
            $this->log->setCommand($command->getName());
            return $this->done($command->getName(), $this->runCommand($command, $tokens, $output));
        } catch (\Throwable $e) {
            $output->renderThrowable($e, $command?->getSynopsis());
            $code = is_int($e->getCode()) && $e->getCode() > 0 ? $e->getCode() : Command::FAILURE;
            return $this->done($command?->getName() ?? $name, $code);
        }
    }

    private function runCommand(Command $command, array $tokens, Output $output): int
    {
        $input = new Input(
            $tokens,
            [...$command->getOptions(), ...self::globalOptions()],
            $command->getArguments(),
            $command->getName()
        );
        if ($input->getOption('help')) {
            return (new Command\HelpCommand('help'))->describe($command, $output);
        }
        $fault = Faults::forCommand($this->shop->config, $command->getName());
        Faults::sleep($fault);
        $failWhen = empty($fault['exit']) ? null : ($fault['when'] ?? 'before');
        if ($failWhen === 'before') {
            return $this->injectFailure($command, $fault, $output);
        }
        $code = $command->execute($input, $output, $this->shop);
        return $failWhen === 'after' ? $this->injectFailure($command, $fault, $output) : $code;
    }

    /** A fault's failure, reported where this command reports its own failures. */
    private function injectFailure(Command $command, array $fault, Output $output): int
    {
        $message = (string)($fault['message'] ?? 'Injected failure of ' . $command->getName());
        if (($fault['stream'] ?? $command->failureStream()) === 'stdout') {
            $output->writeln('<error>' . $message . '</error>');
        } else {
            $output->renderThrowable(new \RuntimeException($message), $command->getSynopsis());
        }
        return (int)$fault['exit'];
    }

    private function done(?string $command, int $code): int
    {
        $this->log->setCommand($command);
        $this->log->setExitCode($code);
        return $code;
    }

    /** @return array<string, class-string<Command>> name => class, as registered right now, by name */
    private function registered(): array
    {
        $commands = self::SETUP_COMMANDS + ($this->shop->config->isAvailable() ? self::MODULE_COMMANDS : []);
        ksort($commands);
        return $commands;
    }

    /** @return array<string, Command> name => command, as registered right now */
    public function commands(): array
    {
        $commands = [];
        foreach (array_keys($this->registered()) as $name) {
            $commands[$name] = self::command($name);
        }
        return $commands;
    }

    private static function command(string $name): Command
    {
        $class = self::SETUP_COMMANDS[$name] ?? self::MODULE_COMMANDS[$name];
        return new $class($name);
    }

    /** Symfony Application::find(). */
    public function find(string $name): Command
    {
        $commands = $this->registered();
        $aliases = array_filter(self::ALIASES, static fn (string $command): bool => isset($commands[$command]));
        if (isset($commands[$name])) {
            return self::command($name);
        }
        if (isset($aliases[$name])) {
            return self::command($aliases[$name]);
        }
        $all = [...array_keys($commands), ...array_keys($aliases)];
        $expr = self::abbreviationPattern($name);
        $matches = preg_grep('{^' . $expr . '}', $all) ?: preg_grep('{^' . $expr . '}i', $all) ?: [];
        if (!$matches || !preg_grep('{^' . $expr . '$}i', $matches)) {
            if (($pos = strrpos($name, ':')) !== false) {
                $this->findNamespace(substr($name, 0, $pos), $all);
            }
            throw new ConsoleException(sprintf('Command "%s" is not defined.', $name)
                . self::didYouMean(self::alternatives($name, $all)));
        }
        $resolved = array_values(array_unique(array_map(
            static fn (string $match): string => $aliases[$match] ?? $match,
            $matches
        )));
        if (count($resolved) > 1) {
            $list = array_map(
                static fn (string $command) => '    ' . $command . ' ' . self::command($command)->getDescription(),
                $resolved
            );
            throw new ConsoleException(sprintf(
                "Command \"%s\" is ambiguous.\nDid you mean one of these?\n%s.",
                $name,
                implode("\n", $list)
            ));
        }
        return self::command($resolved[0]);
    }

    /** Symfony Application::findNamespace(): throws when no namespace matches. */
    private function findNamespace(string $namespace, array $names): void
    {
        $namespaces = [];
        foreach ($names as $name) {
            $parts = explode(':', $name);
            array_pop($parts);
            for ($i = 1; $i <= count($parts); ++$i) {
                $namespaces[implode(':', array_slice($parts, 0, $i))] = true;
            }
        }
        $namespaces = array_keys($namespaces);
        if (!preg_grep('{^' . self::abbreviationPattern($namespace) . '}', $namespaces)) {
            throw new ConsoleException(
                sprintf('There are no commands defined in the "%s" namespace.', $namespace)
                . self::didYouMean(self::alternatives($namespace, $namespaces))
            );
        }
    }

    private static function abbreviationPattern(string $name): string
    {
        return implode('[^:]*:', array_map('preg_quote', explode(':', $name))) . '[^:]*';
    }

    private static function didYouMean(array $alternatives): string
    {
        if (!$alternatives) {
            return '';
        }
        return (count($alternatives) === 1 ? "\n\nDid you mean this?\n    " : "\n\nDid you mean one of these?\n    ")
            . implode("\n    ", $alternatives);
    }

    /** Symfony Application::findAlternatives(): levenshtein per name part, then whole. */
    private static function alternatives(string $name, array $collection): array
    {
        $threshold = 1000;
        $scores = [];
        foreach (explode(':', $name) as $i => $sub) {
            foreach ($collection as $item) {
                $parts = explode(':', $item);
                $exists = isset($scores[$item]);
                if (!isset($parts[$i])) {
                    if ($exists) {
                        $scores[$item] += $threshold;
                    }
                    continue;
                }
                $lev = levenshtein($sub, $parts[$i]);
                if ($lev <= strlen($sub) / 3 || ($sub !== '' && str_contains($parts[$i], $sub))) {
                    $scores[$item] = $exists ? $scores[$item] + $lev : $lev;
                } elseif ($exists) {
                    $scores[$item] += $threshold;
                }
            }
        }
        foreach ($collection as $item) {
            $lev = levenshtein($name, $item);
            if ($lev <= strlen($name) / 3 || str_contains($item, $name)) {
                $scores[$item] = isset($scores[$item]) ? $scores[$item] - $lev : $lev;
            }
        }
        $scores = array_filter($scores, static fn ($lev) => $lev < 2 * $threshold);
        ksort($scores, SORT_NATURAL | SORT_FLAG_CASE);
        return array_keys($scores);
    }

    /** @return Option[] Symfony's default definition (and what Magento's Cli accepts). */
    public static function globalOptions(): array
    {
        return [
            new Option('help', 'h', Option::NONE, 'Display help for the given command.'),
            new Option('quiet', 'q', Option::NONE, 'Do not output any message'),
            new Option('verbose', 'v', Option::NONE, 'Increase the verbosity of messages'),
            new Option('version', 'V', Option::NONE, 'Display this application version'),
            new Option('ansi', null, Option::NONE, 'Force ANSI output'),
            new Option('no-ansi', null, Option::NONE, 'Disable ANSI output'),
            new Option('no-interaction', 'n', Option::NONE, 'Do not ask any interactive question'),
        ];
    }

    /** First token that is not an option: the command name. */
    private static function commandName(array $tokens): ?string
    {
        foreach ($tokens as $token) {
            if ($token === '--') {
                return null;
            }
            if ($token !== '' && $token[0] !== '-') {
                return $token;
            }
        }
        return null;
    }

    /** Application::configureIO(): -q wins, then -vvv / -vv / -v. */
    private static function verbosity(array $tokens): int
    {
        if (array_intersect($tokens, ['-q', '--quiet'])) {
            return Output::QUIET;
        }
        if (array_intersect($tokens, ['-vvv', '--verbose=3'])) {
            return Output::DEBUG;
        }
        if (array_intersect($tokens, ['-vv', '--verbose=2'])) {
            return Output::VERY_VERBOSE;
        }
        if (array_intersect($tokens, ['-v', '--verbose', '--verbose=1'])) {
            return Output::VERBOSE;
        }
        return Output::NORMAL;
    }
}
