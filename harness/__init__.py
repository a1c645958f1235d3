"""Container supportability matrix runner."""

__version__ = "0.1.0"
