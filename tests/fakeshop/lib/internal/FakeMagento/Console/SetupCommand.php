<?php
/** Magento\Framework\Console\Command\AbstractSetupCommand: adds --magento-init-params. */
declare(strict_types=1);

namespace FakeMagento\Console;

abstract class SetupCommand extends Command
{
    /** @return Option[] */
    protected function ownOptions(): array
    {
        return [];
    }

    public function getOptions(): array
    {
        return [
            ...$this->ownOptions(),
            new Option(
                'magento-init-params',
                null,
                Option::REQUIRED,
                'Add to any command to customize Magento initialization parameters'
            ),
        ];
    }
}
