<?php
/**
 * Magento's app/etc/NonComposerComponentRegistration.php (a Composer "files" autoload):
 * registers every module and theme found under app/code and app/design.
 */
$pathList = [
    dirname(__DIR__) . '/code/*/*/registration.php',
    dirname(__DIR__) . '/design/*/*/*/registration.php',
];
foreach ($pathList as $path) {
    foreach (glob($path, GLOB_NOSORT) ?: [] as $file) {
        include $file;
    }
}
