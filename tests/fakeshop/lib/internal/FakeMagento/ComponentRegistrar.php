<?php
/**
 * Reproduces Magento\Framework\Component\ComponentRegistrar: modules and themes exist for
 * Magento only once their registration.php has registered them (app/etc/
 * NonComposerComponentRegistration.php includes every app/code/*\/*\/registration.php).
 */
declare(strict_types=1);

namespace FakeMagento;

final class ComponentRegistrar
{
    public const MODULE = 'module';
    public const THEME = 'theme';

    /** @var array<string, array<string, string>> */
    private static array $paths = [self::MODULE => [], self::THEME => []];

    public static function register(string $type, string $name, string $path): void
    {
        if (isset(self::$paths[$type][$name])) {
            // Same wording as Magento's LogicException for a component registered twice.
            throw new \LogicException(
                ucfirst($type) . " '" . $name . "' from '" . $path . "' "
                . "has been already defined in '" . self::$paths[$type][$name] . "'."
            );
        }
        self::$paths[$type][$name] = str_replace('\\', '/', $path);
    }

    /** @return array<string, string> name => absolute path */
    public static function getPaths(string $type): array
    {
        $paths = self::$paths[$type] ?? [];
        ksort($paths);
        return $paths;
    }
}
