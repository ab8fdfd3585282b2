"""Models for pipeflow (installed as pipeflow.models); filled in by later work."""
