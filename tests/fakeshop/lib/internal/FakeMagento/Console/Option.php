<?php
/** Symfony\Component\Console\Input\InputOption, reduced to what bin/magento needs. */
declare(strict_types=1);

namespace FakeMagento\Console;

final class Option
{
    public const NONE = 1;
    public const REQUIRED = 2;
    public const OPTIONAL = 4;
    public const IS_ARRAY = 8;

    public readonly mixed $default;

    public function __construct(
        public readonly string $name,
        public readonly ?string $shortcut,
        public readonly int $mode,
        public readonly string $description = '',
        mixed $default = null
    ) {
        $this->default = match (true) {
            $mode & self::NONE => false,
            ($mode & self::IS_ARRAY) && $default === null => [],
            default => $default,
        };
    }

    public function acceptValue(): bool
    {
        return (bool)($this->mode & (self::REQUIRED | self::OPTIONAL));
    }

    public function isValueRequired(): bool
    {
        return (bool)($this->mode & self::REQUIRED);
    }

    public function isArray(): bool
    {
        return (bool)($this->mode & self::IS_ARRAY);
    }

    /** Symfony InputDefinition::getSynopsis() element. */
    public function synopsis(): string
    {
        $value = '';
        if ($this->acceptValue()) {
            $optional = !$this->isValueRequired();
            $value = ' ' . ($optional ? '[' : '') . strtoupper($this->name) . ($optional ? ']' : '');
        }
        $shortcut = $this->shortcut ? '-' . $this->shortcut . '|' : '';
        return '[' . $shortcut . '--' . $this->name . $value . ']';
    }
}
