"""Loss layers (filled in by the losses work)."""
__all__ = []
