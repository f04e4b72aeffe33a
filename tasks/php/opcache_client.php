<?php
// Needs tasks/php/fastcgi.php before it (fcgi_exchange).
$job = json_decode($argv[1], true);
$out = ['responses' => [], 'removed' => false];

function connect(string $address, array $ssl = []) {
    $ctx = stream_context_create(['ssl' => $ssl]);
    $why = [];  // every warning: a TLS failure says why before "Unable to connect"
    set_error_handler(function (int $no, string $msg) use (&$why): bool {
        $why[] = $msg;
        return true;
    });
    $s = stream_socket_client($address, $errno, $errstr, TIMEOUT, STREAM_CLIENT_CONNECT, $ctx);
    restore_error_handler();
    if (!$s) {
        if ($errstr && !str_contains(implode(' ', $why), $errstr)) $why[] = $errstr;
        $why = implode('; ', $why) ?: "error $errno";
        return ['error' => "cannot connect to $address: $why"];
    }
    stream_set_timeout($s, TIMEOUT);
    return $s;
}

function split_cgi(string $raw, array $r): array {
    [$head, $body] = array_pad(explode("\r\n\r\n", $raw, 2), 2, '');
    $r['status'] = preg_match('/^Status:\s*(\d{3})/mi', $head, $m) ? (int) $m[1] : 200;
    if ($raw === '') $r['status'] = null;  // no answer at all
    $r['body'] = $body;
    return $r;
}

function fcgi(array $job, string $op): array {
    $target = $job['target'];
    $s = connect($target[0] === '/' ? "unix://$target" : "tcp://$target");
    if (is_array($s)) return $s;
    $file = $job['file'];
    $params = [
        'GATEWAY_INTERFACE' => 'CGI/1.1', 'SERVER_SOFTWARE' => 'fabric-magento-deploy',
        'SERVER_PROTOCOL' => 'HTTP/1.1', 'REQUEST_METHOD' => 'GET',
        'SCRIPT_FILENAME' => $file, 'SCRIPT_NAME' => '/' . basename($file),
        'REQUEST_URI' => '/' . basename($file) . "?op=$op", 'QUERY_STRING' => "op=$op",
        'DOCUMENT_ROOT' => dirname($file), 'SERVER_NAME' => 'localhost', 'SERVER_PORT' => '80',
        'REMOTE_ADDR' => '127.0.0.1', 'REMOTE_PORT' => '0', 'SERVER_ADDR' => '127.0.0.1',
        'CONTENT_LENGTH' => '0', 'CONTENT_TYPE' => '', 'HTTP_HOST' => 'localhost',
        'HTTP_X_OPCACHE_TOKEN' => $job['token'],
    ];
    $r = fcgi_exchange($s, $params);
    fclose($s);
    $stdout = $r['stdout'];
    unset($r['stdout']);
    return split_cgi($stdout, $r);
}

function http(array $job, string $op): array {
    $ssl = ['peer_name' => $job['sni'], 'SNI_enabled' => true];
    $s = connect(($job['tls'] ? 'tls' : 'tcp') . "://{$job['target']}", $ssl);
    if (is_array($s)) return $s;
    fwrite($s, "GET {$job['path']}?op=$op HTTP/1.0\r\nHost: {$job['host_header']}\r\n"
        . "X-Opcache-Token: {$job['token']}\r\nUser-Agent: fabric-magento-deploy\r\n"
        . "Connection: close\r\n\r\n");
    $raw = (string) stream_get_contents($s);
    $timed_out = stream_get_meta_data($s)['timed_out'];
    $r = ['end' => !$timed_out, 'timed_out' => $timed_out, 'stderr' => ''];
    fclose($s);
    [$head, $body] = array_pad(explode("\r\n\r\n", $raw, 2), 2, '');
    $r['status'] = preg_match('#^HTTP/\S+\s+(\d{3})#', $head, $m) ? (int) $m[1] : 0;
    $r['body'] = $body;
    return $r;
}

function ask(array $job, string $op): array {
    $r = $job['mode'] === 'fcgi' ? fcgi($job, $op) : http($job, $op);
    $r['op'] = $op;
    $r['json'] = json_decode($r['body'] ?? '', true);
    return $r;
}

define('TIMEOUT', $job['timeout']);
$written = [];
try {
    // The file goes to its own directory and, for url, to every release's pub/ as well:
    // a worker whose realpath cache still maps current/ to the old release must find it.
    $dirs = array_merge([dirname($job['file'])], glob($job['copies'], GLOB_ONLYDIR) ?: []);
    $seen = [];
    foreach ($dirs as $i => $dir) {
        $real = realpath($dir) ?: $dir;
        if (isset($seen[$real])) continue;
        $seen[$real] = true;
        $file = "$dir/" . basename($job['file']);
        $fh = @fopen($file, 'x');
        if ($fh === false && $i === 0) {
            $out['write_error'] = error_get_last()['message'] ?? 'fopen failed';
            break;
        }
        if ($fh === false) continue;
        $written[] = $file;
        fwrite($fh, $job['code']);
        fclose($fh);
        chmod($file, 0644);
    }
    foreach (isset($out['write_error']) ? [] : $job['ops'] as $op) {
        $r = ask($job, $op);
        // Asked again for up to 3 s: while a restart is pending (status), and when OPcache
        // is on in the pool's ini but off for this one request: a request that began while
        // another reset's restart was in progress runs without OPcache, and says so.
        for ($i = 0; $i < 30 && (($op === 'status' && !empty($r['json']['pending']))
                || (($r['json']['enable'] ?? '') === '1' && ($r['json']['enabled'] ?? true) === false
                    && empty($r['json']['pending']))); $i++) {
            usleep(100000);
            $r = ask($job, $op);
        }
        $out['responses'][] = $r;
        if (($r['json']['magic'] ?? '') !== 'opcache-flush/1') break;
    }
} finally {
    foreach ($written as $file) @unlink($file);
    clearstatcache();
    $out['removed'] = !array_filter($written, 'file_exists');
    echo json_encode($out, JSON_INVALID_UTF8_SUBSTITUTE), "\n";
}
