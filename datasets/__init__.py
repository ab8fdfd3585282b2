"""Datasets for pipeflow, installed as pipeflow.datasets."""
from .digits import Digits

__all__ = ["Digits"]
