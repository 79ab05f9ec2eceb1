"""Wheel build hook: the pages' templates and static files go inside the package.

They live beside the package in the repository (the design card's layout, and what
``make run`` and editable installs read); an installed wheel has no project folder, so
``authserver/templates`` and ``authserver/static`` are copied into it here
(``authserver.config.asset_dir`` finds them). Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
ASSETS = ("templates", "static")


class BuildPyWithAssets(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's folders
        for name in ASSETS:
            shutil.copytree(
                ROOT / name,
                Path(self.build_lib) / "authserver" / name,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )


setup(cmdclass={"build_py": BuildPyWithAssets})
