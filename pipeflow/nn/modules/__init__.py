"""The layers, one family per module."""
