<?php
/**
 * Stand-in for Symfony Console's own exceptions (CommandNotFoundException, invalid
 * options...). Symfony renders them without the "In File.php line N:" header.
 */
declare(strict_types=1);

namespace FakeMagento\Exception;

class ConsoleException extends \InvalidArgumentException
{
}
