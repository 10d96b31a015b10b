"""The package version, kept apart so low-level modules can import it without cycles."""

__version__ = "0.1.0"
