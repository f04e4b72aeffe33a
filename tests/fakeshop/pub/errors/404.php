<?php
/** Magento's pub/errors/404.php: "404 error: Page not found.", HTTP 404. */
require __DIR__ . '/../../app/bootstrap.php';
\FakeMagento\Storefront\ErrorPages::render404();
