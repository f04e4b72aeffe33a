<?php
use FakeMagento\ComponentRegistrar;

ComponentRegistrar::register(ComponentRegistrar::MODULE, 'Shop_Catalog', __DIR__);
