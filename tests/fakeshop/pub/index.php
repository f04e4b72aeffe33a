<?php
/**
 * Fake Magento storefront (see tests/fakeshop/README.md). On success: HTTP 200 with
 * "label=<release label>", "bp=<physical release dir>", "static=<deployed version>".
 * Errors use Magento's wording and HTTP status codes.
 */
require __DIR__ . '/../app/bootstrap.php';
$label = require BP . '/app/code/Shop/Catalog/Label.php';
\FakeMagento\Storefront\App::run(BP, $_SERVER, (string)$label);
