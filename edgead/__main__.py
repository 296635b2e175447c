"""`python -m edgead ...`, as torchrun launches it: `torchrun --nproc-per-node 2 -m edgead train ...`."""
import sys

from edgead.cli import main

sys.exit(main())
