<?php
/** An "after" plugin on Product::getName(): only runs through the generated Interceptor. */
declare(strict_types=1);

namespace Shop\Catalog\Plugin;

use Shop\Catalog\Model\Product;

class ProductNamePlugin
{
    public function afterGetName(Product $subject, string $result): string
    {
        return trim($result) . ' (plugin)';
    }
}
