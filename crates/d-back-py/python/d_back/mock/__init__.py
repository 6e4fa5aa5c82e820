"""The built-in world: four Discord servers and their users, as plain data."""

from d_back.mock.data import MockDataProvider

__all__ = ["MockDataProvider"]
