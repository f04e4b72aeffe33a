<?php
declare(strict_types=1);

namespace FakeMagento\Console\Command;

final class MaintenanceEnableCommand extends AbstractMaintenanceCommand
{
    public function getDescription(): string
    {
        return 'Enables maintenance mode';
    }

    protected function isEnable(): bool
    {
        return true;
    }

    protected function getDisplayString(): string
    {
        return '<info>Enabled maintenance mode</info>';
    }
}
