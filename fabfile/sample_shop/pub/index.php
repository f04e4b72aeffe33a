<?php
echo (include __DIR__ . '/../app/code/Demo/Shop/Label.php'), "\n";
