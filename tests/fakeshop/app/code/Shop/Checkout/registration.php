<?php
use FakeMagento\ComponentRegistrar;

ComponentRegistrar::register(ComponentRegistrar::MODULE, 'Shop_Checkout', __DIR__);
