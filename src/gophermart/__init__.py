"""Gophermart: a loyalty-points service.

The business lives in :mod:`gophermart.domain` (pure rules) and
:mod:`gophermart.application` (use cases and the ports they need). Frameworks and
drivers live at the edges, in :mod:`gophermart.adapters` and
:mod:`gophermart.entrypoints`; :mod:`gophermart.bootstrap` wires them together.
"""

__version__ = "0.1.0"
