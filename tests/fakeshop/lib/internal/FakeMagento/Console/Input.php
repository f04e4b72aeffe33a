<?php
/**
 * Symfony's ArgvInput parsing, with its error messages: "--opt=value", "--opt value",
 * "-j4", "-fv", "--", array options, unknown options, options that need a value.
 */
declare(strict_types=1);

namespace FakeMagento\Console;

use FakeMagento\Exception\ConsoleException;

final class Input
{
    /** @var array<string, mixed> */
    private array $options = [];
    /** @var array<string, mixed> */
    private array $arguments = [];
    /** @var string[] */
    private array $tokens;

    /**
     * @param string[] $tokens argv after the script name
     * @param Option[] $optionDefs command + global options
     * @param Argument[] $argumentDefs command arguments (after the command name)
     */
    public function __construct(
        array $tokens,
        private readonly array $optionDefs,
        private readonly array $argumentDefs,
        private readonly string $commandName
    ) {
        $this->tokens = $tokens;
        $this->parse();
    }

    public function getOption(string $name): mixed
    {
        $def = $this->find($name);
        return array_key_exists($name, $this->options) ? $this->options[$name] : $def->default;
    }

    public function getArgument(string $name): mixed
    {
        foreach ($this->argumentDefs as $def) {
            if ($def->name === $name) {
                return $this->arguments[$name] ?? ($def->isArray ? ($def->default ?? []) : $def->default);
            }
        }
        throw new ConsoleException(sprintf('The "%s" argument does not exist.', $name));
    }

    public function isInteractive(): bool
    {
        return !$this->getOption('no-interaction');
    }

    private function parse(): void
    {
        $parseOptions = true;
        $positional = [];
        while (($token = array_shift($this->tokens)) !== null) {
            if ($parseOptions && $token === '--') {
                $parseOptions = false;
            } elseif ($parseOptions && str_starts_with($token, '--')) {
                $this->parseLongOption(substr($token, 2));
            } elseif ($parseOptions && $token !== '-' && str_starts_with($token, '-')) {
                $this->parseShortOption(substr($token, 1));
            } else {
                $positional[] = $token;
            }
        }
        array_shift($positional); // the command name itself
        foreach ($positional as $token) {
            $this->addArgument($token);
        }
    }

    private function parseLongOption(string $name): void
    {
        $pos = strpos($name, '=');
        if ($pos !== false) {
            $this->addLongOption(substr($name, 0, $pos), substr($name, $pos + 1));
        } else {
            $this->addLongOption($name, null);
        }
    }

    private function parseShortOption(string $name): void
    {
        if (strlen($name) > 1) {
            $def = $this->byShortcut($name[0]);
            if ($def !== null && $def->acceptValue()) {
                $this->addLongOption($def->name, substr($name, 1)); // -j4
                return;
            }
            $this->parseShortOptionSet($name);
            return;
        }
        $this->addLongOption($this->shortcutToName($name), null);
    }

    private function parseShortOptionSet(string $name): void
    {
        $length = strlen($name);
        for ($i = 0; $i < $length; ++$i) {
            $def = $this->byShortcut($name[$i]);
            if ($def === null) {
                throw new ConsoleException(sprintf('The "-%s" option does not exist.', $name[$i]));
            }
            if ($def->acceptValue()) {
                $this->addLongOption($def->name, $i === $length - 1 ? null : substr($name, $i + 1));
                return;
            }
            $this->addLongOption($def->name, null);
        }
    }

    private function addLongOption(string $name, ?string $value): void
    {
        $def = $this->findOrNull($name);
        if ($def === null) {
            throw new ConsoleException(sprintf('The "--%s" option does not exist.', $name));
        }
        if ($value !== null && !$def->acceptValue()) {
            throw new ConsoleException(sprintf('The "--%s" option does not accept a value.', $name));
        }
        if (($value === null || $value === '') && $def->acceptValue() && $this->tokens) {
            $next = array_shift($this->tokens);
            if ($next === '' || $next[0] !== '-') {
                $value = $next;
            } else {
                array_unshift($this->tokens, $next);
            }
        }
        if ($value === null) {
            if ($def->isValueRequired()) {
                throw new ConsoleException(sprintf('The "--%s" option requires a value.', $name));
            }
            if (!$def->isArray() && !$def->acceptValue()) {
                $value = true;
            }
        }
        if ($def->isArray()) {
            $this->options[$name][] = $value;
        } else {
            $this->options[$name] = $value;
        }
    }

    private function addArgument(string $token): void
    {
        $index = count($this->arguments);
        $defs = array_values($this->argumentDefs);
        if (isset($defs[$index])) {
            $def = $defs[$index];
            $this->arguments[$def->name] = $def->isArray ? [$token] : $token;
            return;
        }
        $last = end($defs);
        if ($last !== false && $last->isArray && isset($this->arguments[$last->name])) {
            $this->arguments[$last->name][] = $token;
            return;
        }
        if ($defs) {
            $names = implode('" "', array_map(static fn (Argument $a) => $a->name, $defs));
            throw new ConsoleException(sprintf(
                'Too many arguments to "%s" command, expected arguments "%s".',
                $this->commandName,
                $names
            ));
        }
        throw new ConsoleException(sprintf(
            'No arguments expected for "%s" command, got "%s".',
            $this->commandName,
            $token
        ));
    }

    private function shortcutToName(string $shortcut): string
    {
        $def = $this->byShortcut($shortcut);
        if ($def === null) {
            throw new ConsoleException(sprintf('The "-%s" option does not exist.', $shortcut));
        }
        return $def->name;
    }

    private function byShortcut(string $shortcut): ?Option
    {
        foreach ($this->optionDefs as $def) {
            if ($def->shortcut === $shortcut) {
                return $def;
            }
        }
        return null;
    }

    private function findOrNull(string $name): ?Option
    {
        foreach ($this->optionDefs as $def) {
            if ($def->name === $name) {
                return $def;
            }
        }
        return null;
    }

    private function find(string $name): Option
    {
        return $this->findOrNull($name)
            ?? throw new ConsoleException(sprintf('The "%s" option does not exist.', $name));
    }
}
