<?php
/**
 * Magento's app/autoload.php: the application cannot start without Composer's autoloader.
 */
$vendorDir = require BP . '/app/etc/vendor_path.php';
$vendorAutoload = BP . "/{$vendorDir}/autoload.php";
if (!file_exists($vendorAutoload)) {
    throw new \Exception(
        'Vendor autoload is not found. Please run \'composer install\' under application root directory.'
    );
}
return include $vendorAutoload;
