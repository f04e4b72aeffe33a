<?php
use FakeMagento\ComponentRegistrar;

ComponentRegistrar::register(ComponentRegistrar::THEME, 'frontend/Magento/blank', __DIR__);
