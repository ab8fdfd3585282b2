"""The model zoo, installed as pipeflow.models."""
from .simple import MLP, SmallCNN

__all__ = ["MLP", "SmallCNN"]
