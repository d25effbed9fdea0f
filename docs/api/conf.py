"""Sphinx configuration of the API reference, generated from the docstrings.

Build it (from the repository root, with logcal installed or on ``PYTHONPATH``)::

    python3 -m pip install ".[docs]"
    python3 -m sphinx -W --keep-going -b html docs/api build/docs

The package is imported, not read from source: autodoc documents what users get, and the
compiled modules must therefore be built first.
"""

import logcal

project = "logcal"
author = "The logcal authors"
copyright = "The logcal authors"
release = logcal.__version__
version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]

# The docstrings are numpydoc style.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

# Each module's __all__ is its public API; signatures show the annotations as written.
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# The adapters import torch, torchmetrics, transformers, dask and ray; stand-ins let the reference
# build without them (torchmetrics itself would import scipy, which rejects a stand-in torch).
autodoc_mock_imports = ["torch", "torchmetrics", "transformers", "dask", "ray"]

html_theme = "alabaster"
html_title = f"logcal {release} API reference"
exclude_patterns = ["_build"]
