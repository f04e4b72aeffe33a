<?php
/** Symfony\Component\Console\Input\InputArgument (optional arguments only). */
declare(strict_types=1);

namespace FakeMagento\Console;

final class Argument
{
    public function __construct(
        public readonly string $name,
        public readonly bool $isArray = false,
        public readonly string $description = '',
        public readonly mixed $default = null
    ) {
    }
}
