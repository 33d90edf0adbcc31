# Dataflow's --setup_file needs a setup.py; the project is fully described in pyproject.toml.
from setuptools import setup

setup()
