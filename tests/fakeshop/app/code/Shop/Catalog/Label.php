<?php
// Release label shown by the storefront (label=...); pub/index.php includes this file,
// so OPcache caches it per path like any code file.
return 'dev';
