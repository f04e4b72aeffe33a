<?php
/**
 * Magento\Framework\App\ExceptionHandler: developer mode -> HTTP 500 text/plain
 * "1 exception(s): ..."; maintenance -> pub/errors 503 page; not installed -> the setup
 * wizard is not available, so its NOTE is added; anything else -> error report page
 * (HTTP 500) with a record saved in var/report/.
 */
declare(strict_types=1);

namespace FakeMagento\Storefront;

use FakeMagento\Exception\BootstrapException;
use FakeMagento\Shop;

final class ExceptionHandler
{
    public function __construct(private readonly Shop $shop, private readonly array $server)
    {
    }

    public function handle(\Throwable $e): void
    {
        $code = $e instanceof BootstrapException ? $e->getCode() : 0;
        if ($code === BootstrapException::ERR_IS_INSTALLED) {
            $e = new \Exception(
                $e->getMessage() . "\nNOTE: You cannot install Magento using the Setup Wizard "
                . "because the Magento setup directory cannot be accessed. \n"
                . 'You can install Magento using either the command line or you must restore access '
                . 'to the following directory: ' . $this->shop->bp . "/setup\n",
                0,
                $e
            );
        }
        if ($this->shop->config->mode() === 'developer') {
            $this->developerPage($e);
        } elseif ($code === BootstrapException::ERR_MAINTENANCE) {
            ErrorPages::render503();
        } else {
            ErrorPages::renderReport($this->shop->bp, $e, $this->server);
        }
    }

    private function developerPage(\Throwable $e): void
    {
        $chain = [];
        for ($current = $e; $current !== null; $current = $current->getPrevious()) {
            $chain[] = $current;
        }
        $text = sprintf("%d exception(s):\n", count($chain));
        foreach ($chain as $i => $exception) {
            $text .= sprintf("Exception #%d (%s): %s\n", $i, self::className($exception), $exception->getMessage());
        }
        foreach ($chain as $i => $exception) {
            $text .= sprintf(
                "\nException #%d (%s): %s\n%s\n",
                $i,
                self::className($exception),
                $exception->getMessage(),
                $exception->getTraceAsString()
            );
        }
        http_response_code(500);
        header('Content-Type: text/plain');
        echo $text;
    }

    public static function className(\Throwable $e): string
    {
        return method_exists($e, 'magentoClass') ? $e->magentoClass() : get_class($e);
    }
}
