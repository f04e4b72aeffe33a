<?php
/**
 * A catalog product: just enough for setup:di:compile to have something to intercept
 * (etc/di.xml gives it a plugin) and a factory to generate (Shop\Checkout\Model\Cart).
 */
declare(strict_types=1);

namespace Shop\Catalog\Model;

class Product
{
    public function __construct(private readonly string $name = '')
    {
    }

    public function getName(): string
    {
        return $this->name;
    }
}
