"""The ``pinrun`` command line: thin click commands over the library."""
