"""The one packaging setting pyproject.toml cannot say: the packages are found (hashtagger*) AND the default
model's package is mapped to the repository's exported/ folder, so that a wheel (and an editable install) ships
the bundle that `tag` uses when no --model is given (hashtagger/bundle/locate.py). Its files are listed under
pyproject.toml's package-data; everything else is there too."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["hashtagger*"]), "hashtagger_default_model"],
    package_dir={"hashtagger_default_model": "exported"},
)
