<?php
/**
 * setup:static-content:deploy (Magento\Setup\Console\Command\DeployStaticContentCommand +
 * Deploy\Service\DeployStaticContent, 2.4):
 *  - outside production mode without -f: LocalizedException "NOTE: Manual static content
 *    deployment is not required..." (Symfony error block on stderr, exit 1);
 *  - InputValidator errors (locale, content version, include+exclude) -> exit 1;
 *  - pub/static/deployed_version.txt is written FIRST (--content-version or the current
 *    timestamp), then the packages; errors during the deploy are printed as
 *    "Error happened during deploy process: ..." and give exit 1.
 * Languages: arguments or -l, default en_US plus the locales configured in config.php.
 */
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Console\Argument;
use FakeMagento\Console\Command;
use FakeMagento\Console\Input;
use FakeMagento\Console\Option;
use FakeMagento\Console\Output;
use FakeMagento\Exception\LocalizedException;
use FakeMagento\Shop;
use FakeMagento\StaticContent;

final class StaticContentDeployCommand extends Command
{
    private const STRATEGIES = ['quick', 'standard', 'compact'];

    public function getDescription(): string
    {
        return 'Deploys static view files';
    }

    public function getOptions(): array
    {
        $array = Option::IS_ARRAY | Option::OPTIONAL;
        $options = [
            new Option('force', 'f', Option::NONE, 'Deploy files in any mode.'),
            new Option('strategy', 's', Option::OPTIONAL, 'Deploy files using specified strategy.', 'quick'),
            new Option('area', 'a', $array, 'Generate files only for the specified areas.', ['all']),
            new Option('exclude-area', null, $array, 'Do not generate files for the specified areas.', ['none']),
            new Option('theme', 't', $array, 'Generate static view files for only the specified themes.', ['all']),
            new Option('exclude-theme', null, $array, 'Do not generate files for the specified themes.', ['none']),
            new Option('language', 'l', $array, 'Generate files only for the specified languages.', ['all']),
            new Option('exclude-language', null, $array, 'Do not generate files for the specified languages.', ['none']),
            new Option('jobs', 'j', Option::OPTIONAL, 'Enable parallel processing using the specified number of jobs.', 0),
            new Option('max-execution-time', null, Option::OPTIONAL, 'The maximum expected execution time', 900),
            new Option('symlink-locale', null, Option::NONE, 'Create symlinks for the files of those locales'),
            new Option('content-version', null, Option::OPTIONAL, 'Custom version of static content'),
            new Option('refresh-content-version-only', null, Option::NONE, 'Refreshing the version of static content only'),
        ];
        foreach (['javascript', 'js-bundle', 'css', 'less', 'images', 'fonts', 'html', 'misc', 'html-minify'] as $kind) {
            $options[] = new Option('no-' . $kind, null, Option::NONE, "Do not deploy {$kind} files.");
        }
        return $options;
    }

    public function getArguments(): array
    {
        return [new Argument('languages', true, 'Space-separated list of ISO-639 language codes')];
    }

    public function execute(Input $input, Output $output, Shop $shop): int
    {
        $started = microtime(true);
        $this->checkAppMode($input, $shop);
        $this->validate($input);
        $refreshOnly = (bool)$input->getOption('refresh-content-version-only');
        $strategy = (string)($input->getOption('strategy') ?? 'quick');
        if (!$refreshOnly) {
            $output->writeln(PHP_EOL . "Deploy using {$strategy} strategy");
        }
        $exitCode = self::SUCCESS;
        try {
            $this->deploy($input, $output, $shop, $strategy, $refreshOnly);
        } catch (\Throwable $e) {
            $output->writeln('<error>Error happened during deploy process: ' . $e->getMessage() . '</error>');
            $exitCode = self::FAILURE;
        }
        if (!$refreshOnly) {
            $output->writeln(PHP_EOL . 'Execution time: ' . (microtime(true) - $started));
        }
        return $exitCode;
    }

    private function checkAppMode(Input $input, Shop $shop): void
    {
        if (!$input->getOption('force') && $shop->config->mode() !== 'production') {
            throw new LocalizedException(
                'NOTE: Manual static content deployment is not required in "default" and "developer" modes.'
                . PHP_EOL . 'In "default" and "developer" modes static contents are being deployed '
                . 'automatically on demand.'
                . PHP_EOL . 'If you still want to deploy in these modes, use -f option: '
                . "'bin/magento setup:static-content:deploy -f'"
            );
        }
    }

    /** Magento\Deploy\Console\InputValidator. */
    private function validate(Input $input): void
    {
        if ($input->getOption('area')[0] !== 'all' && $input->getOption('exclude-area')[0] !== 'none') {
            throw new \InvalidArgumentException('--area (-a) and --exclude-area cannot be used at the same time');
        }
        if ($input->getOption('theme')[0] !== 'all' && $input->getOption('exclude-theme')[0] !== 'none') {
            throw new \InvalidArgumentException('--theme (-t) and --exclude-theme cannot be used at the same time');
        }
        $languages = $input->getArgument('languages') ?: ['all'];
        if ($languages[0] !== 'all') {
            foreach ($languages as $lang) {
                if (!preg_match('/^[a-z]{2,3}_[A-Z][A-Za-z]{1,3}$/', (string)$lang)) {
                    throw new \InvalidArgumentException(
                        $lang . ' argument has invalid value, please run info:language:list for list of available locales'
                    );
                }
            }
            if ($input->getOption('exclude-language')[0] !== 'none') {
                throw new \InvalidArgumentException(
                    '--language (-l) and --exclude-language cannot be used at the same time'
                );
            }
        }
        $version = (string)($input->getOption('content-version') ?? '');
        if ($version !== '' && !preg_match('/^[A-Za-z0-9_.]+$/', $version)) {
            throw new \InvalidArgumentException(
                'Argument "content-version" has invalid value, content version should contain only characters, '
                . 'digits and dots'
            );
        }
    }

    private function deploy(Input $input, Output $output, Shop $shop, string $strategy, bool $refreshOnly): void
    {
        $version = (string)($input->getOption('content-version') ?? '');
        $version = $version !== '' ? $version : (string)time();
        $shop->staticContent()->saveVersion($version);
        if ($refreshOnly) {
            $output->writeln('New content version: ' . $version);
            return;
        }
        if (!in_array($strategy, self::STRATEGIES, true)) {
            throw new \InvalidArgumentException('Wrong deploy strategy type: ' . $strategy);
        }
        if (!$shop->config->isAvailable() && !$shop->config->get('scopes/websites')) {
            throw new \DomainException("The default website isn't defined. Set the website and try again.");
        }
        $skip = [];
        foreach (['no-css', 'no-javascript', 'no-misc'] as $flag) {
            $skip[$flag] = (bool)$input->getOption($flag);
        }
        $stamp = 'release ' . $shop->label() . ', version ' . $version;
        foreach ($this->packages($input, $shop) as [$area, $theme, $locale]) {
            $count = $shop->staticContent()->deployPackage($area, $theme, $locale, $stamp, $skip);
            $output->writeln(sprintf(
                '%-40s %-15s %s 100%%',
                "{$area}/{$theme}/{$locale}",
                "{$count}/{$count}",
                str_repeat('=', 28)
            ));
        }
    }

    /** @return list<array{string, string, string}> area, theme, locale */
    private function packages(Input $input, Shop $shop): array
    {
        $areas = (array)$input->getOption('area');
        $excludeAreas = (array)$input->getOption('exclude-area');
        $themes = (array)$input->getOption('theme');
        $excludeThemes = (array)$input->getOption('exclude-theme');
        $locales = $this->locales($input, $shop);
        $packages = [];
        foreach (StaticContent::themes() as $theme) {
            if (!self::selected($theme['area'], $areas, $excludeAreas)
                || !self::selected($theme['code'], $themes, $excludeThemes)) {
                continue;
            }
            foreach ($locales as $locale) {
                $packages[] = [$theme['area'], $theme['code'], $locale];
            }
        }
        return $packages;
    }

    /** @return string[] */
    private function locales(Input $input, Shop $shop): array
    {
        $languages = $input->getArgument('languages') ?: (array)$input->getOption('language');
        if ($languages && $languages[0] !== 'all') {
            return array_values(array_unique($languages));
        }
        $locales = ['en_US'];
        $system = $shop->config->configFile()['system'] ?? [];
        array_walk_recursive($system, static function ($value, $key) use (&$locales) {
            if ($key === 'code' && is_string($value) && preg_match('/^[a-z]{2,3}_[A-Z]{2}$/', $value)) {
                $locales[] = $value;
            }
        });
        $exclude = (array)$input->getOption('exclude-language');
        return array_values(array_diff(array_unique($locales), $exclude));
    }

    private static function selected(string $value, array $include, array $exclude): bool
    {
        return ($include[0] === 'all' || in_array($value, $include, true)) && !in_array($value, $exclude, true);
    }
}
