"""`python -m devstack.chaos`: the seeded soak."""

import sys

from devstack.chaos.harness import main

sys.exit(main())
