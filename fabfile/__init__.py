"""The reference fabfile: every task of the library, plus ``demo``.

Run ``fab --list`` here. In your own project, a fabfile of two lines does the same::

    from fabric_magento_deploy import ns
"""

from fabric_magento_deploy import ns as library

from .demo import demo

ns = library
ns.add_task(demo)
