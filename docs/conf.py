"""Sphinx configuration for netkeepalive's documentation."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "netkeepalive"
author = "netkeepalive developers"
copyright = "2026, netkeepalive developers"

from netkeepalive import __version__ as release  # noqa: E402

version = release
extensions = ["sphinx.ext.autodoc", "sphinx.ext.intersphinx", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
intersphinx_mapping: dict[str, tuple[str, None]] = {}
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
