"""pinrun's version: a leaf module, so that any part may read it (bundles write it)."""

__version__ = "0.1.0.dev0"
