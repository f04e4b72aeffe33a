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
     * setup:di:compile output: an interceptor per enabled module and the compiled area
     * configurations (generated/metadata/<area>.php).
     * @param string[] $modules
     */
    public function compile(array $modules, string $stamp): void
    {
        foreach ($modules as $module) {
            $namespace = str_replace('_', '\\', $module);
            $dir = $this->bp . '/generated/code/' . str_replace('_', '/', $module) . '/Model/Config';
            $this->write($dir . '/Interceptor.php', "<?php\nnamespace {$namespace}\\Model\\Config;\n\n"
                . "/** Interceptor class for @see \\{$namespace}\\Model\\Config ({$stamp}) */\n"
                . "class Interceptor\n{\n}\n");
        }
        foreach (['primary', 'global', 'frontend', 'adminhtml', 'crontab', 'webapi_rest'] as $area) {
            $this->write("{$this->bp}/generated/metadata/{$area}.php",
                "<?php\nreturn " . var_export(['modules' => $modules, 'stamp' => $stamp], true) . ";\n");
        }
    }

    private function write(string $file, string $content): void
    {
        if (!is_dir(dirname($file))) {
            mkdir(dirname($file), 0777, true);
        }
        file_put_contents($file, $content);
    }
}
