<?php
/**
 * Uses a factory that exists only once setup:di:compile generated it, like Magento
 * classes asking for "<Class>Factory" in their constructor.
 */
declare(strict_types=1);

namespace Shop\Checkout\Model;

use Shop\Catalog\Model\Product;

class Cart
{
    public function __construct(private readonly \Shop\Catalog\Model\ProductFactory $productFactory)
    {
    }

    public function add(string $name): Product
    {
        return $this->productFactory->create(['name' => $name]);
    }
}
