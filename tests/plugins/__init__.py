"""Throwaway plug-ins: each is one module that declares and implements an extension, registered by
the tests (tests/test_plugins.py) with no other file of the studio changed."""
