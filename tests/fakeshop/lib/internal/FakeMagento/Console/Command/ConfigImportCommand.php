<?php
/**
 * app:config:import (Magento\Deploy\Console\Command\App\ConfigImportCommand + Processor):
 * "Nothing to import." when the stored hashes match; otherwise runs the importers of the
 * changed sections, then stores the new hashes (flag 'config_hash').
 */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\ConfigState;
use FakeMagento\Console\Command;
use FakeMagento\Console\Input;
use FakeMagento\Console\Output;
use FakeMagento\Shop;

final class ConfigImportCommand extends Command
{
    public function getDescription(): string
    {
        return 'Import data from shared configuration files to appropriate data storage';
    }

    public function failureStream(): string
    {
        return 'stdout';
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        return self::import($shop, $output);
    }

    /** Processor::execute(); also run by setup:upgrade. */
    public static function import(Shop $shop, Output $output): int
    {
        $db = $shop->db();
        if (!$shop->configState()->hasChanges($db->read())) {
            $output->writeln('<info>Nothing to import.</info>');
            return self::SUCCESS;
        }
        $output->writeln('<info>Processing configurations data from configuration file...</info>');
        $state = $shop->configState();
        $config = $shop->config;
        $db->update(static function (array $data) use ($state, $config, $output): array {
            foreach (ConfigState::IMPORTERS as $section => $messages) {
                if (!$state->hasChanges($data, $section)) {
                    continue;
                }
                $sectionData = (array)$config->getConfigData($section);
                match ($section) {
                    'scopes' => $data['store_scopes'] = $sectionData,
                    'themes' => $data['theme'] = $sectionData,
                    'system' => $data['flag']['system_config_snapshot'] = $sectionData,
                };
                $output->writeln(array_map(static fn ($m) => '<info>' . $m . '</info>', $messages));
            }
            $data['flag']['config_hash'] = $state->hashes();
            return $data;
        }, 'app:config:import', $shop->bp);
        return self::SUCCESS;
    }
}
