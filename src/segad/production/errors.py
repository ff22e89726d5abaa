"""Errors of the production bundle (re-exported by `segad.production.bundle`).

Example:
    >>> from segad.production.errors import BundleError, BundleVersionError
    >>> issubclass(BundleVersionError, BundleError) and issubclass(BundleError, ValueError)
    True
"""

from __future__ import annotations


class BundleError(ValueError):
    """A bundle cannot be written or used; the message says which file and what is wrong."""


class BundleVersionError(BundleError):
    """The bundle was written by an incompatible format or package version."""


class BundleSchemaError(BundleError):
    """The bundle's feature schema does not match this code or its own BRF model."""


class BundleIntegrityError(BundleError):
    """A bundle file is missing or its content differs from the manifest."""
