<?php
/** Magento's pub/errors/503.php: the maintenance page, HTTP 503. */
require __DIR__ . '/../../app/bootstrap.php';
\FakeMagento\Storefront\ErrorPages::render503();
