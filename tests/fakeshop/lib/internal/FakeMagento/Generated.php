<?php
/**
 * Generated files: Magento\Framework\App\State\CleanupFiles (used by setup:upgrade) and
 * what setup:di:compile writes to generated/code and generated/metadata.
 */
declare(strict_types=1);

namespace FakeMagento;

final class Generated
{
    public function __construct(private readonly string $bp)
    {
    }

    /**
     * CleanupFiles::clearCodeGeneratedFiles(): empties generated/code, generated/metadata,
     * pub/static and var/view_preprocessed. Like Magento's glob('*'), dot files such as
     * pub/static/.htaccess survive. Returns the log lines setup:upgrade prints.
     * @return string[]
     */
    public function clearCodeGeneratedFiles(): array
    {
        return array_merge(
            $this->emptyDir('generated/code'),
            $this->emptyDir('generated/metadata'),
            $this->emptyDir('pub/static'),
            $this->emptyDir('var', 'view_preprocessed')
        );
    }

    /** @return string[] */
    private function emptyDir(string $dir, ?string $subPath = null): array
    {
        $dirPath = $this->bp . '/' . $dir . '/';
        if (!is_dir($dirPath)) {
            return ["The directory '{$dirPath}' doesn't exist - skipping cleanup"];
        }
        $messages = [];
        $base = $subPath === null ? $dirPath : $dirPath . $subPath . '/';
        foreach (glob($base . '*') ?: [] as $path) {
            $messages[] = $path;
            self::remove($path);
        }
        return $messages;
    }

    public static function remove(string $path): void
    {
        if (is_dir($path) && !is_link($path)) {
            foreach (scandir($path) ?: [] as $child) {
                if ($child !== '.' && $child !== '..') {
                    self::remove($path . '/' . $child);
                }
            }
            @rmdir($path);
        } elseif (file_exists($path) || is_link($path)) {
            @unlink($path);
        }
    }

    /**
     * setup:di:compile output for the enabled modules (name => [path, setup_version]):
     *  - an Interceptor for every class that an etc/di.xml gives a <plugin> (Magento's
     *    Interception generator): generated/code/<Class path>/Interceptor.php, a subclass
     *    whose public methods run the plugins' after<Method>() on the result;
     *  - a Factory for every <Class>Factory type-hinted in the modules' PHP files while
     *    only <Class> exists (Magento's application code generator);
     *  - the compiled area configuration generated/metadata/<area>.php.
     * Generated classes are PSR-0 under generated/code/, so Composer loads them through
     * the root composer.json's "psr-0": {"": ["app/code/", "generated/code/"]} and puts
     * them in the class map only when `composer dump-autoload -o` runs AFTER this.
     * @param array<string, array{path: string, setup_version: ?string}> $modules
     */
    public function compile(array $modules, string $stamp): void
    {
        $plugins = [];
        $factories = [];
        foreach ($modules as $module) {
            $plugins = array_merge_recursive($plugins, self::plugins($module['path']));
            $factories = array_merge($factories, self::factoryHints($module['path']));
        }
        ksort($plugins);
        foreach ($plugins as $subject => $pluginClasses) {
            if (class_exists($subject)) {
                $this->writeClass($subject . '\\Interceptor', $this->interceptor($subject, (array)$pluginClasses, $stamp));
            }
        }
        foreach (array_unique($factories) as $factory) {
            $subject = substr($factory, 0, -strlen('Factory'));
            if (class_exists($subject) && !class_exists($factory)) {
                $this->writeClass($factory, $this->factory($subject, isset($plugins[$subject]), $stamp));
            }
        }
        foreach (['primary', 'global', 'frontend', 'adminhtml', 'crontab', 'webapi_rest'] as $area) {
            $this->write("{$this->bp}/generated/metadata/{$area}.php",
                "<?php\nreturn " . var_export(['modules' => array_keys($modules), 'stamp' => $stamp], true) . ";\n");
        }
    }

    /**
     * <type name="Class"><plugin type="PluginClass"/></type> of a module's etc/di.xml
     * (regex: the fake needs no php-xml). Disabled plugins (disabled="true") are skipped.
     * @return array<string, string[]> subject class => plugin classes
     */
    private static function plugins(string $modulePath): array
    {
        $file = $modulePath . '/etc/di.xml';
        $xml = is_file($file) ? (string)preg_replace('/<!--.*?-->/s', '', (string)file_get_contents($file)) : '';
        $found = [];
        preg_match_all('#<type\s+name="([^"]+)"[^>]*>(.*?)</type>#s', $xml, $types, PREG_SET_ORDER);
        foreach ($types as [, $subject, $body]) {
            preg_match_all('#<plugin\b[^>]*>#', $body, $tags);
            foreach ($tags[0] as $tag) {
                if (preg_match('/\btype="([^"]+)"/', $tag, $m) && !preg_match('/\bdisabled="true"/', $tag)) {
                    $found[ltrim($subject, '\\')][] = ltrim($m[1], '\\');
                }
            }
        }
        return $found;
    }

    /**
     * Fully qualified "...Factory" type hints in a module's PHP files (Test/ excluded).
     * @return string[]
     */
    private static function factoryHints(string $modulePath): array
    {
        $hints = [];
        $files = new \RecursiveIteratorIterator(new \RecursiveDirectoryIterator($modulePath, \FilesystemIterator::SKIP_DOTS));
        foreach ($files as $file) {
            $path = (string)$file;
            if (!str_ends_with($path, '.php') || str_contains($path, '/Test/')) {
                continue;
            }
            preg_match_all('/\\\\?((?:[A-Z][A-Za-z0-9_]*\\\\)+[A-Z][A-Za-z0-9_]*Factory)\s+\$/', (string)file_get_contents($path), $m);
            foreach ($m[1] as $class) {
                $hints[] = ltrim($class, '\\');
            }
        }
        return $hints;
    }

    /** @param string[] $pluginClasses */
    private function interceptor(string $subject, array $pluginClasses, string $stamp): string
    {
        $methods = '';
        foreach ((new \ReflectionClass($subject))->getMethods(\ReflectionMethod::IS_PUBLIC) as $method) {
            if ($method->isConstructor() || $method->isStatic() || $method->isFinal()) {
                continue;
            }
            $after = 'after' . ucfirst($method->getName());
            $chain = array_values(array_filter($pluginClasses, static fn (string $p): bool => method_exists($p, $after)));
            if (!$chain) {
                continue;
            }
            $type = $method->getReturnType();
            $returns = $type === null ? '' : ': ' . self::typeName($type);
            $calls = '';
            foreach ($chain as $plugin) {
                $calls .= "        \$result = (new \\{$plugin}())->{$after}(\$this, \$result, ...\$arguments);\n";
            }
            $methods .= "\n    public function {$method->getName()}(...\$arguments){$returns}\n    {\n"
                . "        \$result = parent::{$method->getName()}(...\$arguments);\n{$calls}        return \$result;\n    }\n";
        }
        [$namespace, $short] = self::split($subject . '\\Interceptor');
        return "<?php\nnamespace {$namespace};\n\n/**\n * Interceptor class for @see \\{$subject} ({$stamp})\n */\n"
            . "class {$short} extends \\{$subject}\n{\n    public const PLUGINS = ['"
            . implode("', '", array_map('addslashes', $pluginClasses)) . "'];\n"
            . $methods . "}\n";
    }

    private function factory(string $subject, bool $intercepted, string $stamp): string
    {
        $instance = $intercepted ? $subject . '\\Interceptor' : $subject;
        [$namespace, $short] = self::split($subject . 'Factory');
        return "<?php\nnamespace {$namespace};\n\n/**\n * Factory class for @see \\{$subject} ({$stamp})\n */\n"
            . "class {$short}\n{\n    /** Constructor arguments by name, like ObjectManager::create(). */\n"
            . "    public function create(array \$data = []): \\{$subject}\n    {\n"
            . "        return new \\{$instance}(...\$data);\n    }\n}\n";
    }

    private static function typeName(\ReflectionType $type): string
    {
        if ($type instanceof \ReflectionNamedType) {
            $name = $type->isBuiltin() || in_array($type->getName(), ['self', 'static'], true)
                ? $type->getName() : '\\' . $type->getName();
            return ($type->allowsNull() && $name !== 'mixed' && $name !== 'null' ? '?' : '') . $name;
        }
        return (string)$type;
    }

    /** @return array{string, string} namespace, short class name */
    private static function split(string $class): array
    {
        $pos = (int)strrpos($class, '\\');
        return [substr($class, 0, $pos), substr($class, $pos + 1)];
    }

    private function writeClass(string $class, string $code): void
    {
        $this->write($this->bp . '/generated/code/' . str_replace('\\', '/', $class) . '.php', $code);
    }

    private function write(string $file, string $content): void
    {
        if (!is_dir(dirname($file))) {
            mkdir(dirname($file), 0777, true);
        }
        file_put_contents($file, $content);
    }
}
