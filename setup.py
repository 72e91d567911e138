"""Package layout: ONE import root, ``zoo``.

``zoo/`` installs as ``zoo``, ``tasks/`` as ``zoo.tasks``, ``callbacks/`` as ``zoo.callbacks`` and ``model_cards/``
as ``zoo.model_cards`` (setuptools ``package-dir`` mapping; works for wheels and editable installs). Everything else
lives in pyproject.toml.
"""

from setuptools import find_packages, setup

ROOTS = {"zoo": "zoo", "zoo.tasks": "tasks", "zoo.callbacks": "callbacks", "zoo.model_cards": "model_cards"}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for name, folder in ROOTS.items():
        package_dir[name] = folder
        packages.append(name)
        for sub in find_packages(folder):
            if name == "zoo" and sub.split(".")[0] in {"tasks", "callbacks", "model_cards"}:
                continue
            packages.append(f"{name}.{sub}")
    return packages, package_dir


packages, package_dir = _packages()
setup(packages=packages, package_dir=package_dir)
