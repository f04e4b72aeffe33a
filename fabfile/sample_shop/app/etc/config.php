<?php
return ['modules' => ['Demo_Shop' => 1]];
