"""Datasets for pipeflow (installed as pipeflow.datasets); filled in by later work."""
