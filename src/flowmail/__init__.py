"""flowmail: self-hosted email automation engine."""

__version__ = "0.1.0"
