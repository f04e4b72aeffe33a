<?php
// FastCGI primitives and one request/response exchange, shared by the PHP clients the library pipes to `php` on the hosts
// (opcache_client.php, fcgi_request.php): each client is sent as this file followed by
// its own code (see fastcgi_client() in tasks/opcache.py).

function read_exactly($s, int $n): ?string {
    $buf = '';
    while (strlen($buf) < $n && !feof($s)) {
        $chunk = fread($s, $n - strlen($buf));
        if ($chunk === false || ($chunk === '' && stream_get_meta_data($s)['timed_out'])) break;
        $buf .= $chunk;
    }
    return strlen($buf) === $n ? $buf : null;
}

function fcgi_record(int $type, string $content): string {
    return pack('CCnnCx', 1, $type, 1, strlen($content), 0) . $content;
}

function fcgi_length(int $n): string {
    return $n < 128 ? chr($n) : pack('N', $n | 0x80000000);
}

// One request on an open socket: the params, an empty body, then every record until
// END_REQUEST. Returns stdout, stderr, end (END_REQUEST seen, with its app_status and
// protocol_status) and timed_out; the caller closes the socket.
function fcgi_exchange($s, array $params): array {
    $pairs = '';
    foreach ($params as $k => $v) {
        $pairs .= fcgi_length(strlen($k)) . fcgi_length(strlen($v)) . $k . $v;
    }
    // BEGIN_REQUEST (responder, no keep-alive), PARAMS, empty PARAMS, empty STDIN.
    fwrite($s, fcgi_record(1, pack('nCx5', 1, 0)) . fcgi_record(4, $pairs)
        . fcgi_record(4, '') . fcgi_record(5, ''));
    $r = ['stdout' => '', 'stderr' => '', 'end' => false];
    while (($h = read_exactly($s, 8)) !== null) {
        $h = unpack('Cversion/Ctype/nid/nlength/Cpadding', $h);
        $content = read_exactly($s, $h['length'] + $h['padding']);
        if ($content === null) break;
        $content = substr($content, 0, $h['length']);
        if ($h['type'] === 6) $r['stdout'] .= $content;
        if ($h['type'] === 7) $r['stderr'] .= $content;
        if ($h['type'] === 3) {
            $r = ['end' => true] + unpack('Napp_status/Cprotocol_status', $content) + $r;
            break;
        }
    }
    $r['timed_out'] = stream_get_meta_data($s)['timed_out'];
    return $r;
}
