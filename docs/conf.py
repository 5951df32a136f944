"""Sphinx configuration for the eqprop documentation.

The gallery (``docs/examples/*.py``, sphinx-gallery) is executed on every build: a broken
example fails the build. ``EQPROP_DOCS_FAST=1`` (set by CI) makes the examples use fewer
epochs and grid points; unset, they draw the full figures.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("."))  # _gallery.py
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.abspath("../.numba_cache"))
os.environ.setdefault("MPLBACKEND", "Agg")

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
    "sphinx_gallery.gen_gallery",
]
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_validation_checks: set[str] = set()
autodoc_typehints = "none"
autodoc_member_order = "bysource"
exclude_patterns = ["_build", "examples/README.rst"]
nitpicky = False

html_theme = "pydata_sphinx_theme"
html_title = "eqprop"
html_theme_options = {
    # the right-hand sidebar lists the page's sections on every page
    "secondary_sidebar_items": ["page-toc"],
    "show_toc_level": 2,
    "navigation_depth": 2,
    "show_nav_level": 1,
}
# the left sidebar shows the whole site (_templates/sidebar-site-nav.html), also on
# pages without children, where the theme's section navigation would be empty
templates_path = ["_templates"]
html_sidebars = {"**": ["sidebar-site-nav"]}


sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "image_scrapers": ("_gallery.eqprop_figures", "matplotlib"),
    "reset_modules": ("matplotlib", "_gallery.reset_seen"),
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "_gallery.ExampleOrder",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "show_memory": False,
    "min_reported_time": 1,
}
