"""Computes the package list; all other metadata is in pyproject.toml.

pipeflow/ and its subpackages are found automatically. The repo's top-level
datasets/ and models/ folders (and their subpackages) are added as
pipeflow.datasets and pipeflow.models; pyproject.toml's
[tool.setuptools.package-dir] maps them to their folders. They are never
installed as top-level `datasets` or `models`.
"""

from setuptools import find_packages, setup

# Installed package name -> folder in the repo (keep in sync with
# [tool.setuptools.package-dir] in pyproject.toml).
MAPPED = {"pipeflow.datasets": "datasets", "pipeflow.models": "models"}


def _packages():
    packages = find_packages(include=["pipeflow", "pipeflow.*"])
    for name, folder in MAPPED.items():
        packages.append(name)
        packages.extend(f"{name}.{sub}" for sub in find_packages(where=folder))
    return packages


setup(packages=_packages())
