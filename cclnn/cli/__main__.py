"""``python -m cclnn.cli ...``, the same as ``python -m cclnn ...``."""
import sys

from . import main

sys.exit(main())
