<?php
/** One bin/magento command: its definition (Symfony style) and what it does. */
declare(strict_types=1);

namespace FakeMagento\Console;

use FakeMagento\Shop;

abstract class Command
{
    public const SUCCESS = 0;
    public const FAILURE = 1;

    abstract public function getName(): string;

    abstract public function getDescription(): string;

    /** @return string[] */
    public function getAliases(): array
    {
        return [];
    }

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
     * Commands registered by modules (di.xml) exist only once Magento is installed; the
     * setup commands (and app:config:import) are there before.
     */
    public function requiresInstalledApp(): bool
    {
        return false;
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
