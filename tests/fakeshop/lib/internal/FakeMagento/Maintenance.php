<?php
/**
 * Reproduces Magento\Framework\App\MaintenanceMode: <BP>/var/.maintenance.flag and the
 * exempt addresses in <BP>/var/.maintenance.ip (comma-separated). BP is the physical
 * release directory, so the flag belongs to one release unless var/ is shared.
 */
declare(strict_types=1);

namespace FakeMagento;

final class Maintenance
{
    public function __construct(private readonly string $bp)
    {
    }

    public function flagFile(): string
    {
        return $this->bp . '/var/.maintenance.flag';
    }

    private function ipFile(): string
    {
        return $this->bp . '/var/.maintenance.ip';
    }

    /** isOn($remoteAddr): flag present and the address not exempt (IPs or CIDR ranges). */
    public function isOn(string $remoteAddr = ''): bool
    {
        if (!is_file($this->flagFile())) {
            return false;
        }
        if ($remoteAddr === '') {
            return true;
        }
        foreach ($this->getAddressInfo() as $allowed) {
            if ($allowed === $remoteAddr || self::inRange($remoteAddr, $allowed)) {
                return false;
            }
        }
        return true;
    }

    public function set(bool $on): void
    {
        if ($on) {
            $this->ensureVarDir();
            touch($this->flagFile());
        } elseif (is_file($this->flagFile())) {
            unlink($this->flagFile());
        }
    }

    /** setAddresses(): '' removes the list. */
    public function setAddresses(string $addresses): void
    {
        if ($addresses === '') {
            if (is_file($this->ipFile())) {
                unlink($this->ipFile());
            }
            return;
        }
        if (!preg_match('/^[^\s,]+(,[^\s,]+)*$/', $addresses)) {
            throw new \InvalidArgumentException("One or more IP-addresses is expected (comma-separated)\n");
        }
        $this->ensureVarDir();
        file_put_contents($this->ipFile(), $addresses);
    }

    /** @return string[] */
    public function getAddressInfo(): array
    {
        if (!is_file($this->ipFile())) {
            return [];
        }
        return explode(',', trim((string)file_get_contents($this->ipFile())));
    }

    /** Backend\Model\Validator\IpValidator: IPs and CIDR ranges are valid, 'none' clears. */
    public static function validateIps(array $ips, bool $noneAllowed): array
    {
        $none = array_values(array_filter($ips, static fn ($ip) => $ip === 'none'));
        $invalid = array_values(array_filter(
            $ips,
            static fn ($ip) => $ip !== 'none' && !filter_var($ip, FILTER_VALIDATE_IP) && !self::isCidr($ip)
        ));
        $valid = count($ips) - count($none) - count($invalid);
        if ($none && !$noneAllowed) {
            return ["'none' is not allowed"];
        }
        if ($noneAllowed && count($none) > 1) {
            return ["'none' can be only used once"];
        }
        if ($noneAllowed && $none && ($valid > 0 || $invalid)) {
            return ["Multiple values are not allowed when 'none' is used"];
        }
        return array_map(static fn ($ip) => "Invalid IP $ip", $invalid);
    }

    private static function isCidr(string $value): bool
    {
        $parts = explode('/', $value);
        return count($parts) === 2 && filter_var($parts[0], FILTER_VALIDATE_IP)
            && ctype_digit($parts[1]) && (int)$parts[1] <= (str_contains($parts[0], ':') ? 128 : 32);
    }

    private static function inRange(string $ip, string $cidr): bool
    {
        if (!self::isCidr($cidr) || !filter_var($ip, FILTER_VALIDATE_IP)) {
            return false;
        }
        [$net, $bits] = explode('/', $cidr);
        $ipBin = (string)inet_pton($ip);
        $netBin = (string)inet_pton($net);
        if (strlen($ipBin) !== strlen($netBin)) {
            return false;
        }
        $bits = (int)$bits;
        $bytes = intdiv($bits, 8);
        if (substr($ipBin, 0, $bytes) !== substr($netBin, 0, $bytes)) {
            return false;
        }
        $rest = $bits % 8;
        if ($rest === 0) {
            return true;
        }
        $mask = (0xFF << (8 - $rest)) & 0xFF;
        return (ord($ipBin[$bytes]) & $mask) === (ord($netBin[$bytes]) & $mask);
    }

    private function ensureVarDir(): void
    {
        if (!is_dir($this->bp . '/var')) {
            mkdir($this->bp . '/var', 0777, true);
        }
    }
}
