"""`python -m devstack.chaos`: the seeded soak (`soak.main`)."""

import sys

from devstack.chaos.soak import main

sys.exit(main())
