<?php
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Shop;

final class CacheFlushCommand extends AbstractCacheManageCommand
{
    public function getDescription(): string
    {
        return 'Flushes cache storage used by cache type(s)';
    }

    protected function performAction(Shop $shop, array $types): void
    {
        $shop->cache()->flush($types);
    }

    protected function getDisplayMessage(): string
    {
        return 'Flushed cache types:';
    }
}
