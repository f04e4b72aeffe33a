<?php
/** Errors raised by Magento\Framework\App\Bootstrap before the application runs. */
declare(strict_types=1);

namespace FakeMagento\Exception;

class BootstrapException extends \Exception
{
    public const ERR_MAINTENANCE = 901;
    public const ERR_IS_INSTALLED = 902;

    public function magentoClass(): string
    {
        return 'Exception';
    }
}
