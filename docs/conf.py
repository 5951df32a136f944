"""Sphinx configuration for the eqprop documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.abspath("../.numba_cache"))

project = "eqprop"
author = "eqprop developers"
copyright = "2026, eqprop developers"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_validation_checks: set[str] = set()
autodoc_typehints = "none"
autodoc_member_order = "bysource"
html_theme = "pydata_sphinx_theme"
html_title = "eqprop"
exclude_patterns = ["_build"]
nitpicky = False
