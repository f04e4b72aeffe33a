<?php
/**
 * config:show [path] [--scope=...] [--scope-code=...]
 * (Magento\Config\Console\Command\ConfigShowCommand, 2.4.7):
 *  - the scope is validated (Framework\App\Scope\Validator), then a given path by the
 *    PathValidator: only system.xml *field* paths, so "web" or "web/secure" answer
 *    'The "web/secure" path doesn't exist. Verify and try again.' (see ConfigStructure);
 *  - the value comes from configShowSourceAggregated (see SystemConfig): database, then
 *    config.php/env.php 'system', then CONFIG__* variables; no config.xml defaults;
 *  - a leaf prints its value alone; an array prints "path - value" per leaf (no path:
 *    every value of the scope); a valid field without any value prints an empty line, exit 0;
 *  - every error (scope, path, database) is written as <error>...</error> on stdout, exit 1.
 * A Magento_Config command: it exists only once the application is installed.
 */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\ConfigStructure;
use FakeMagento\Console\Argument;
use FakeMagento\Console\Command;
use FakeMagento\Console\Input;
use FakeMagento\Console\Option;
use FakeMagento\Console\Output;
use FakeMagento\Exception\LocalizedException;
use FakeMagento\Shop;
use FakeMagento\SystemConfig;

final class ConfigShowCommand extends Command
{
    /** ScopeResolverPool of Magento_Store's di.xml ('default' is handled before). */
    private const SCOPE_RESOLVERS = ['default', 'store', 'stores', 'group', 'website', 'websites'];

    private string $inputPath = '';
    private mixed $scope = null;
    private mixed $scopeCode = null;

    public function getDescription(): string
    {
        return 'Shows configuration value for given path. If path is not specified, all saved values will be shown';
    }

    public function getArguments(): array
    {
        return [new Argument('path', false, 'Configuration path, for example section_id/group_id/field_id')];
    }

    public function getOptions(): array
    {
        return [
            new Option('scope', null, Option::OPTIONAL,
                'Scope for configuration, if not specified, then \'default\' scope will be used', 'default'),
            new Option('scope-code', null, Option::OPTIONAL,
                'Scope code (required only if scope is not `default`)', ''),
        ];
    }

    public function failureStream(): string
    {
        return 'stdout';
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        try {
            $this->scope = $input->getOption('scope');
            $this->scopeCode = $input->getOption('scope-code');
            $path = $input->getArgument('path');
            $this->inputPath = $path !== null ? trim((string)$path, '/') : '';

            $source = new SystemConfig($shop->config);
            $db = fn (): array => $shop->db()->read();
            $this->validateScope($source, $db);
            if ($this->inputPath !== '') {
                (new ConfigStructure($shop->modules()->enabled()))->validate($this->inputPath);
            }
            $data = $db();
            $configPath = self::resolve($this->inputPath, (string)$this->scope, (string)$this->scopeCode);
            $value = $source->showSource($data, $configPath);
            if (!$value) {
                $configPath = self::resolve($this->inputPath, (string)$this->scope, strtolower((string)$this->scopeCode));
                $value = $source->showSource($data, $configPath);
                if (!$value) {
                    $value = $source->showSource($data, strtolower($configPath));
                }
            }
            $this->outputResult($output, $value, $this->inputPath);
            return self::SUCCESS;
        } catch (\Exception $e) {
            $output->writeln(sprintf('<error>%s</error>', $e->getMessage()));
            return self::FAILURE;
        }
    }

    /** Magento\Framework\App\Scope\Validator::isValid(). */
    private function validateScope(SystemConfig $source, callable $db): void
    {
        $scope = $this->scope;
        $code = $this->scopeCode;
        if ($scope === 'default' && empty($code)) {
            return;
        }
        if ($scope === 'default') {
            throw new LocalizedException(
                'The "default" scope can\'t include a scope code. Try again without entering a scope code.'
            );
        }
        if (empty($scope)) {
            throw new LocalizedException('A scope is missing. Enter a scope and try again.');
        }
        if (empty($code)) {
            throw new LocalizedException('A scope code is missing. Enter a code and try again.');
        }
        if (!preg_match('/^[a-z]+[a-z0-9_]*$/i', (string)$code)) {
            throw new LocalizedException(
                'The scope code can include only letters (a-z), numbers (0-9) and underscores (_). '
                . 'Also, the first character must be a letter.'
            );
        }
        if (!in_array($scope, self::SCOPE_RESOLVERS, true)) {
            throw new LocalizedException(sprintf('The "%s" value doesn\'t exist. Enter another value and try again.', $scope));
        }
        if (!$source->scopeExists((string)$scope, (string)$code, $db())) {
            throw new LocalizedException(sprintf('The "%s" value doesn\'t exist. Enter another value and try again.', $code));
        }
    }

    /** Magento\Framework\App\Config\ConfigPathResolver::resolve(). */
    private static function resolve(string $path, string $scope, string $scopeCode): string
    {
        $path = trim($path, '/');
        $scope = rtrim($scope, 's');
        if (in_array($scope, ['store', 'website'], true)) {
            $scope .= 's';
        }
        $scopePath = $scope;
        if ($scope !== 'default') {
            $scopePath .= '/' . $scopeCode;
        }
        return $scopePath . ($path !== '' ? '/' . $path : '');
    }

    private function outputResult(Output $output, mixed $configValue, string $configPath): void
    {
        if (!is_array($configValue)) {
            $value = self::text($configValue);
            $output->writeln($this->inputPath === $configPath ? [$value] : sprintf('%s - %s', $configPath, $value));
            return;
        }
        foreach ($configValue as $name => $value) {
            $childPath = empty($configPath) ? (string)$name : $configPath . '/' . $name;
            $this->outputResult($output, $value, $childPath);
        }
    }

    /** What Symfony's writeln makes of a scalar (PHP's string conversion). */
    private static function text(mixed $value): string
    {
        return is_bool($value) ? ($value ? '1' : '') : (string)$value;
    }
}
