<?php
// The storefront as a customer requests it, asked from a web host by its own PHP CLI with
// ext-curl (which Magento itself requires): see tasks/health.py.
// Input: a JSON job in argv[1]: targets [{url, resolve, source, headers}], window_ms, interval_ms,
// timeout_ms, deadline_ms, verify (TLS), auth (bool: "user:password" is the first line of
// stdin, so it never appears in a command line), excerpt (bytes of a failing body).
// Rounds every interval_ms until the window has passed and every target answered 2xx once,
// or the deadline. A request that times out is asked again (a cold page); any other
// answer that is not 2xx ends the run at once, so a broken release is reverted now.
// Output, one line per answer: R round target ms-since-start status seconds curl-errno
// redirect-hex body-hex error-hex; "E<TAB>why" when the probe cannot run; "D" at the end.
$job = json_decode($argv[1], true);
if (!function_exists('curl_init')) {
    echo "E\tthe PHP CLI has no curl extension (Magento requires ext-curl): install php-curl\n";
    exit(3);
}
$auth = $job['auth'] ? rtrim((string)fgets(STDIN), "\r\n") : '';
$hex = fn ($s, $n) => bin2hex(substr((string)$s, 0, $n));
$ms = fn ($t) => intdiv(hrtime(true) - $t, 1000000);
$start = hrtime(true);
$ok = array_fill(0, count($job['targets']), false);

function ask(array $job, array $t, string $auth, int $timeout_ms): array {
    $h = curl_init($t['url']);
    $options = [
        CURLOPT_RETURNTRANSFER => true, CURLOPT_FOLLOWLOCATION => false,
        CURLOPT_TIMEOUT_MS => $timeout_ms, CURLOPT_CONNECTTIMEOUT_MS => $timeout_ms,
        CURLOPT_HTTPHEADER => $t['headers'], CURLOPT_SSL_VERIFYPEER => $job['verify'],
        CURLOPT_SSL_VERIFYHOST => $job['verify'] ? 2 : 0, CURLOPT_NOSIGNAL => true,
        CURLOPT_PROTOCOLS => CURLPROTO_HTTP | CURLPROTO_HTTPS,
        CURLOPT_USERAGENT => $job['agent'],  // so the check is told apart in access logs
    ];
    if ($t['resolve'] !== '') {
        $options[CURLOPT_RESOLVE] = [$t['resolve']];
    }
    if ($t['source'] !== '') {  // from the address itself: what .maintenance.ip must list
        $options[CURLOPT_INTERFACE] = $t['source'];
    }
    if ($auth !== '') {
        $options[CURLOPT_USERPWD] = $auth;
        $options[CURLOPT_HTTPAUTH] = CURLAUTH_BASIC;
    }
    curl_setopt_array($h, $options);
    $body = curl_exec($h);
    $answer = [(int)curl_getinfo($h, CURLINFO_RESPONSE_CODE),
               (float)curl_getinfo($h, CURLINFO_TOTAL_TIME), curl_errno($h),
               (string)curl_getinfo($h, CURLINFO_REDIRECT_URL),
               $body === false ? '' : $body, curl_error($h)];
    curl_close($h);
    return $answer;
}

for ($round = 0; ; $round++) {
    $wait = $start + $round * $job['interval_ms'] * 1000000 - hrtime(true);
    if ($wait > 0) {
        usleep(intdiv($wait, 1000));
    }
    foreach ($job['targets'] as $i => $t) {
        $left = $job['deadline_ms'] - $ms($start);
        if ($left * 10 < $job['timeout_ms']) {
            break 2;  // under a tenth of the timeout left: a request could only time out
        }
        $at = $ms($start);
        [$code, $took, $errno, $redirect, $body, $error] =
            ask($job, $t, $auth, min($job['timeout_ms'], $left));
        $good = $errno === 0 && $code >= 200 && $code < 300;
        printf("R\t%d\t%d\t%d\t%03d\t%.6f\t%d\t%s\t%s\t%s\n", $round, $i, $at, $code, $took,
            $errno, bin2hex($redirect), $good ? '' : $hex($body, $job['excerpt']),
            $good ? '' : bin2hex(substr($error, 0, 300)));
        if ($good) {
            $ok[$i] = true;
        } elseif ($errno !== CURLE_OPERATION_TIMEDOUT) {
            break 2;  // a wrong answer: no need to wait for more
        }
    }
    if (!in_array(false, $ok, true) && $ms($start) >= $job['window_ms']) {
        break;
    }
}
echo "D\n";
