<?php
/** Magento's pub/get.php, reduced: media files not on disk (see FakeMagento\Storefront\Media). */
require realpath(__DIR__) . '/../app/bootstrap.php';
\FakeMagento\Storefront\Media::run(BP, $_SERVER);
