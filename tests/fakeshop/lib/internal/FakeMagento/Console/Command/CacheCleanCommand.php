<?php
declare(strict_types=1);

namespace FakeMagento\Console\Command;

use FakeMagento\Shop;

final class CacheCleanCommand extends AbstractCacheManageCommand
{
    public function getDescription(): string
    {
        return 'Cleans cache type(s)';
    }

    protected function performAction(Shop $shop, array $types): void
    {
        $shop->cache()->clean($types);
    }

    protected function getDisplayMessage(): string
    {
        return 'Cleaned cache types:';
    }
}
