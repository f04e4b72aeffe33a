<?php
/** One bin/magento command: its definition (Symfony style) and what it does. */
declare(strict_types=1);

namespace FakeMagento\Console;

use FakeMagento\Shop;

abstract class Command
{
    public const SUCCESS = 0;
    public const FAILURE = 1;

    /** Like Symfony's `new Command($name)`: the name the application registered it under. */
    public function __construct(private readonly string $name)
    {
    }

    public function getName(): string
    {
        return $this->name;
    }

    abstract public function getDescription(): string;

    /** @return Option[] */
    public function getOptions(): array
    {
        return [];
    }

    /** @return Argument[] */
    public function getArguments(): array
    {
        return [];
    }

    /**
     * Where the command reports a failure: 'stdout' for commands that catch exceptions and
     * writeln('<error>...</error>') (setup:upgrade, app:config:import, setup:di:compile),
     * 'stderr' for those that let Symfony render the exception.
     */
    public function failureStream(): string
    {
        return 'stderr';
    }

    abstract public function execute(Input $input, Output $output, Shop $shop): int;

    /** Symfony Command::getSynopsis(). */
    public function getSynopsis(): string
    {
        $elements = array_map(static fn (Option $o) => $o->synopsis(), $this->getOptions());
        $tail = '';
        if ($elements && $this->getArguments()) {
            $elements[] = '[--]';
        }
        foreach ($this->getArguments() as $argument) {
            $elements[] = '[<' . $argument->name . '>' . ($argument->isArray ? '...' : '');
            $tail .= ']';
        }
        return trim($this->getName() . ' ' . implode(' ', $elements) . $tail);
    }
}
