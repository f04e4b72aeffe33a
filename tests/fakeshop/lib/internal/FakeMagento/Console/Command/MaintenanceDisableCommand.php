<?php
declare(strict_types=1);

namespace FakeMagento\Console\Command;

final class MaintenanceDisableCommand extends AbstractMaintenanceCommand
{
    public function getDescription(): string
    {
        return 'Disables maintenance mode';
    }

    protected function isEnable(): bool
    {
        return false;
    }

    protected function getDisplayString(): string
    {
        return '<info>Disabled maintenance mode</info>';
    }
}
