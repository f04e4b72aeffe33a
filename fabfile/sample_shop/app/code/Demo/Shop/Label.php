<?php
return 'Demo shop, first release';
