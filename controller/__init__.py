"""guard: separation of duties for software delivery, in admission and in CI."""

__version__ = "0.1.0"
