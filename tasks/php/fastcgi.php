<?php
// FastCGI primitives shared by the PHP clients the library pipes to `php` on the hosts
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
