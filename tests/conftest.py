"""Test set-up shared by every test module.

Importing ``compression`` first sets TF_USE_LEGACY_KERAS before TensorFlow loads.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import compression  # noqa: E402,F401
