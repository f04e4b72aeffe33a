<?php
// Needs tasks/php/fastcgi.php before it (fcgi_exchange).
// One FastCGI GET request to a PHP-FPM pool, run with the web host's PHP CLI (see
// tasks/verify.py): it executes a script that is already there (Magento's
// pub/health_check.php in a release not yet live); nothing is written on the host.
// Input: a JSON job in argv[1]: sockets (unix paths or host:port; empty = look for the one
// socket matching globs), script, document_root, script_name, timeout, max_body.
// Output: one JSON line {"found": [...], "responses": [{socket, status, status_line, body,
// stderr, end, timed_out} or {socket, error}]}.
$job = json_decode($argv[1], true);
$out = ['found' => [], 'responses' => []];

// FPM sockets where distributions put them, symlinks resolved (Debian's php-fpm.sock alias).
function discover(array $globs): array {
    $found = [];
    foreach ($globs as $pattern) {
        foreach (glob($pattern) ?: [] as $path) {
            if (@filetype($path) === 'socket' || @filetype(realpath($path) ?: $path) === 'socket') {
                $found[realpath($path) ?: $path] = true;
            }
        }
    }
    return array_keys($found);
}

function ask(array $job, string $socket): array {
    $address = $socket[0] === '/' ? "unix://$socket" : "tcp://$socket";
    $why = [];
    set_error_handler(function (int $no, string $msg) use (&$why): bool {
        $why[] = $msg;
        return true;
    });
    $s = stream_socket_client($address, $errno, $errstr, $job['timeout']);
    restore_error_handler();
    if (!$s) {
        if ($errstr && !str_contains(implode(' ', $why), $errstr)) $why[] = $errstr;
        return ['socket' => $socket,
                'error' => "cannot connect to $address: " . (implode('; ', $why) ?: "error $errno")];
    }
    stream_set_timeout($s, $job['timeout']);
    $params = [
        'GATEWAY_INTERFACE' => 'CGI/1.1', 'SERVER_SOFTWARE' => 'fabric-magento-deploy',
        'SERVER_PROTOCOL' => 'HTTP/1.1', 'REQUEST_METHOD' => 'GET',
        'SCRIPT_FILENAME' => $job['script'], 'SCRIPT_NAME' => $job['script_name'],
        'REQUEST_URI' => $job['script_name'], 'DOCUMENT_URI' => $job['script_name'],
        'QUERY_STRING' => '', 'DOCUMENT_ROOT' => $job['document_root'],
        'SERVER_NAME' => 'localhost', 'SERVER_PORT' => '80', 'SERVER_ADDR' => '127.0.0.1',
        'REMOTE_ADDR' => '127.0.0.1', 'REMOTE_PORT' => '0', 'HTTP_HOST' => 'localhost',
        'HTTP_USER_AGENT' => 'fabric-magento-deploy verify',
        'CONTENT_LENGTH' => '0', 'CONTENT_TYPE' => '',
    ];
    ['stdout' => $stdout, 'stderr' => $stderr, 'end' => $end, 'timed_out' => $timed_out]
        = fcgi_exchange($s, $params);
    fclose($s);
    [$head, $body] = array_pad(explode("\r\n\r\n", $stdout, 2), 2, '');
    // No Status header means 200 (CGI); no output at all means no answer.
    $line = preg_match('/^Status:\s*(\d{3}[^\r\n]*)/mi', $head, $m) ? trim($m[1]) : '200 OK';
    return [
        'socket' => $socket, 'end' => $end, 'timed_out' => $timed_out,
        'status' => $stdout === '' ? null : (int) substr($line, 0, 3),
        'status_line' => $stdout === '' ? '' : $line,
        'body' => substr($body, 0, $job['max_body']),
        'stderr' => substr($stderr, 0, $job['max_body']),
    ];
}

try {
    $sockets = $job['sockets'];
    if (!$sockets) {
        $out['found'] = discover($job['globs']);
        $sockets = count($out['found']) === 1 ? $out['found'] : [];
    }
    foreach ($sockets as $socket) {
        $out['responses'][] = ask($job, $socket);
    }
} finally {
    echo json_encode($out, JSON_INVALID_UTF8_SUBSTITUTE), "\n";
}
