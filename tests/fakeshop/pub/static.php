<?php
/**
 * Magento's pub/static.php: the web server's fallback for /static/ files not on disk
 * (see FakeMagento\Storefront\StaticResource: 404 in production mode).
 */
require realpath(__DIR__) . '/../app/bootstrap.php';
\FakeMagento\Storefront\StaticResource::run(BP, $_SERVER, $_GET);
