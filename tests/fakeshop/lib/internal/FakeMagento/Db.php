<?php
/**
 * The fake MySQL database: one JSON file (env.php db/connection/default/dbname), shared by
 * all web hosts. Readers take a shared flock, writers an exclusive one and rewrite in
 * place (no rename: the directory need not be writable).
 *
 * Layout, named after the Magento tables holding the same facts:
 *   setup_module       {Module: {schema_version, data_version}}
 *   patch_list         [patch class names applied]
 *   declarative_schema {Module: sha1 of etc/db_schema.xml}   (stands for the real tables)
 *   flag               {config_hash: {section: sha1}, system_config_snapshot: {...}}
 *   store_scopes, theme (what app:config:import imported)
 *   core_config_data   [{config_id, scope, scope_id, path, value}]  (see SystemConfig)
 *   history            [{t, event, bp, host}]  (test aid: who wrote the DB, when)
 */
declare(strict_types=1);

namespace FakeMagento;

use FakeMagento\Exception\DbConnectionException;

final class Db
{
    private const OBJECT_KEYS = ['setup_module', 'declarative_schema', 'flag'];

    public function __construct(private readonly string $path)
    {
    }

    /** @return array<string, mixed> */
    public function read(): array
    {
        $handle = $this->open('rb');
        flock($handle, LOCK_SH);
        $text = stream_get_contents($handle);
        flock($handle, LOCK_UN);
        fclose($handle);
        return self::decode((string)$text);
    }

    /**
     * Read-modify-write under an exclusive lock.
     * @param callable(array<string, mixed>): array<string, mixed> $change
     * @return array<string, mixed> the new content
     */
    public function update(callable $change, string $event, string $bp): array
    {
        $handle = $this->open('r+b');
        flock($handle, LOCK_EX);
        try {
            $data = $change(self::decode((string)stream_get_contents($handle)));
            $data['history'][] = [
                't' => microtime(true), 'event' => $event, 'bp' => $bp, 'host' => (string)gethostname(),
            ];
            ftruncate($handle, 0);
            rewind($handle);
            fwrite($handle, self::encode($data));
            fflush($handle);
        } finally {
            flock($handle, LOCK_UN);
            fclose($handle);
        }
        return $data;
    }

    /** @return resource */
    private function open(string $mode)
    {
        $handle = is_file($this->path) ? @fopen($this->path, $mode) : false;
        if ($handle === false) {
            throw new DbConnectionException($this->path);
        }
        return $handle;
    }

    /** @return array<string, mixed> */
    private static function decode(string $text): array
    {
        $data = trim($text) === '' ? [] : json_decode($text, true);
        return is_array($data) ? $data : [];
    }

    /** @param array<string, mixed> $data */
    private static function encode(array $data): string
    {
        foreach (self::OBJECT_KEYS as $key) {
            if (empty($data[$key])) {
                $data[$key] = new \stdClass();
            }
        }
        return json_encode($data, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE) . "\n";
    }
}
