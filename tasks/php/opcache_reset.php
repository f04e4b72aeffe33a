<?php
// One-time OPcache reset written by fabric-magento-deploy (tasks/php/, tasks/opcache.py).
// It is deleted right after use; if you find it, a flush was interrupted: delete it.
header('Content-Type: application/json');
header('Cache-Control: no-store');
if (!hash_equals('@TOKEN@', (string) ($_SERVER['HTTP_X_OPCACHE_TOKEN'] ?? ''))) {
    http_response_code(403);
    exit('{"error":"forbidden"}');
}
$r = ['magic' => 'opcache-flush/1', 'pid' => getmypid(), 'sapi' => PHP_SAPI,
      'loaded' => function_exists('opcache_get_status'),
      'enable' => ini_get('opcache.enable'), 'restrict_api' => ini_get('opcache.restrict_api'),
      'ini' => ['validate_timestamps' => ini_get('opcache.validate_timestamps'),
                'revalidate_freq' => ini_get('opcache.revalidate_freq'), 'php' => PHP_VERSION]];
if ($r['loaded']) {
    $s = @opcache_get_status(false);
    $r['warning'] = error_get_last()['message'] ?? '';
    // While a restart is pending OPcache is off (opcache_enabled false) until no worker
    // is in a request: that is a reset under way, not a pool without OPcache.
    $r['pending'] = is_array($s)
        && (!empty($s['restart_pending']) || !empty($s['restart_in_progress']));
    $r['enabled'] = is_array($s) && (!empty($s['opcache_enabled']) || $r['pending']);
    if ($r['enabled']) {
        $r['scripts'] = $s['opcache_statistics']['num_cached_scripts'] ?? null;
        $r['free'] = $s['memory_usage']['free_memory'] ?? null;
        if (($_GET['op'] ?? '') === 'reset') {
            $r['reset'] = $r['pending'] || @opcache_reset();
            $r['warning'] = error_get_last()['message'] ?? '';
        }
    }
}
echo json_encode($r);
