<?php
/**
 * Compares the code (enabled modules) with the database, the way Magento's validators do:
 *  - DbVersionInfo::getDbVersionErrors()   setup_version vs setup_module (schema + data)
 *  - OldDbValidator                        setup:db:status wording for those errors
 *  - UpToDateDeclarativeSchema / UpToDateSchema / UpToDateData   (db_schema.xml, patches)
 *  - Module\Plugin\DbStatusValidator       the storefront's wording (setup_version only)
 */
declare(strict_types=1);

namespace FakeMagento;

final class DbStatus
{
    /**
     * @param array<string, array{path: string, setup_version: ?string}> $modules enabled modules
     * @param array<string, mixed> $db
     */
    public function __construct(private readonly array $modules, private readonly array $db)
    {
    }

    /** @return list<array{module: string, type: string, current: string, required: string}> */
    public function versionErrors(): array
    {
        $errors = [];
        foreach ($this->modules as $name => $module) {
            $required = $module['setup_version'];
            if ($required === null) {
                continue; // no setup_version: only declarative schema / patches apply
            }
            foreach (['schema' => 'schema_version', 'data' => 'data_version'] as $type => $column) {
                $current = $this->db['setup_module'][$name][$column] ?? null;
                if ($current === null || version_compare($required, (string)$current) !== 0) {
                    $errors[] = [
                        'module' => $name, 'type' => $type,
                        'current' => $current === null || $current === '' ? 'none' : (string)$current,
                        'required' => $required,
                    ];
                }
            }
        }
        return $errors;
    }

    /**
     * OldDbValidator::getNotUpToDateMessage(), quirks included: modules whose DB version is
     * 'none' get no line, lines stop after the first DB version newer than the code, and
     * the generic text is glued to the last line without a line break.
     */
    public function oldDbMessage(): string
    {
        $lines = [];
        $codebaseUpdateNeeded = false;
        foreach ($this->versionErrors() as $error) {
            if ($codebaseUpdateNeeded || $error['current'] === 'none') {
                continue;
            }
            if (version_compare($error['current'], $error['required'], '>')) {
                $codebaseUpdateNeeded = true;
            }
            $lines[] = sprintf(
                '%20s %10s: %11s  ->  %-11s',
                $error['module'],
                $error['type'],
                $error['current'],
                $error['required']
            );
        }
        $generic = "The module code base doesn't match the DB schema and data." . PHP_EOL
            . 'Some modules use code versions newer or older than the database.';
        return implode(PHP_EOL, $lines) . ($codebaseUpdateNeeded ? $generic : '');
    }

    public function isDeclarativeSchemaUpToDate(): bool
    {
        $stored = $this->db['declarative_schema'] ?? [];
        foreach ($this->modules as $name => $module) {
            if (ModuleList::schemaHash($module['path']) !== ($stored[$name] ?? null)) {
                return false;
            }
        }
        return true;
    }

    public function arePatchesUpToDate(string $kind): bool
    {
        $applied = array_flip($this->db['patch_list'] ?? []);
        foreach ($this->modules as $name => $module) {
            foreach (ModuleList::patches($name, $module['path'], $kind) as $patch) {
                if (!isset($applied[$patch])) {
                    return false;
                }
            }
        }
        return true;
    }

    /**
     * setup:db:status messages, in DbStatusCommand's validator order; empty when up to date.
     * @return string[]
     */
    public function statusMessages(): array
    {
        $messages = [];
        if (!$this->isDeclarativeSchemaUpToDate()) {
            $messages[] = 'Declarative Schema is not up to date';
        }
        if (!$this->arePatchesUpToDate('Schema')) {
            $messages[] = 'Schema patches are not up to date';
        }
        if (!$this->arePatchesUpToDate('Data')) {
            $messages[] = 'Data patches are not up to date';
        }
        if ($this->versionErrors()) {
            $messages[] = $this->oldDbMessage();
        }
        return $messages;
    }

    /** DbStatusValidator::beforeDispatch() message (2.4), or null when versions match. */
    public function storefrontError(): ?string
    {
        $tooLow = $tooHigh = [];
        foreach ($this->versionErrors() as $e) {
            if ($e['current'] === 'none' || version_compare($e['current'], $e['required'], '<')) {
                $tooLow[] = "{$e['module']} {$e['type']}: current version - {$e['current']}, "
                    . "required version - {$e['required']}";
            } else {
                $tooHigh[] = "{$e['module']} {$e['type']}: code version - {$e['required']}, "
                    . "database version - {$e['current']}";
            }
        }
        if ($tooHigh) {
            return "Please update your modules: Run \"composer install\" from the Magento root directory.\n"
                . "The following modules are outdated:\n" . implode("\n", $tooHigh);
        }
        if ($tooLow) {
            return "Please upgrade your database: Run \"bin/magento setup:upgrade\" from the Magento root directory.\n"
                . "The following modules are outdated:\n" . implode("\n", $tooLow);
        }
        return null;
    }
}
