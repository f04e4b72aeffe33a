<?php
/** Stand-in for Magento\Framework\Exception\LocalizedException (same name in error pages). */
declare(strict_types=1);

namespace FakeMagento\Exception;

class LocalizedException extends \Exception
{
    public function magentoClass(): string
    {
        return 'Magento\Framework\Exception\LocalizedException';
    }
}
