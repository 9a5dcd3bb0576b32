"""``python -m cclnn ...`` (what ``torchrun -m cclnn train ...`` runs)."""
import sys

from .cli import main

sys.exit(main())
