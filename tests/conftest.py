"""Shared pytest configuration.

Numba writes its on-disk cache next to the sources by default; point it at a writable
folder inside the checkout unless the caller chose one (CI sets NUMBA_CACHE_DIR).
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
os.environ.setdefault("EQPROP_DATA_DIR", str(ROOT.parent / "shared" / "data"))
