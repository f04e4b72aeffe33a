<?php
/**
 * Reproduces Magento\Framework\App\DeploymentConfig\Writer\PhpFormatter, used when
 * setup:upgrade rewrites app/etc/config.php (tests/shop.py writes the same format, so an
 * unchanged module list rewrites the file byte for byte).
 */
declare(strict_types=1);

namespace FakeMagento;

final class PhpFormatter
{
    private const INDENT = '    ';

    public static function format(array $data): string
    {
        return "<?php\nreturn " . self::export($data, 1) . ";\n";
    }

    private static function export(mixed $var, int $depth): string
    {
        if ($var === null) {
            return 'null';
        }
        if (!is_array($var)) {
            return var_export($var, true);
        }
        $indexed = array_keys($var) === range(0, count($var) - 1);
        $lines = [];
        foreach ($var as $key => $value) {
            $lines[] = str_repeat(self::INDENT, $depth)
                . ($indexed ? '' : self::export($key, 0) . ' => ')
                . self::export($value, $depth + 1);
        }
        return sprintf("[\n%s\n%s]", implode(",\n", $lines), str_repeat(self::INDENT, $depth - 1));
    }
}
