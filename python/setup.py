"""Bundles the kharbranth shared library into the package (the rest is in pyproject.toml).

The library is taken from $KH_LIB, else from the repository's cargo target directory
($CARGO_TARGET_DIR or ../target, release profile), and built there with
`cargo build --release --lib` when it is missing. The wheel is then specific to the platform.

The C extension kharbranth._speedups (the fast Manager.poll) is optional: when it does not
build (no compiler, no Python.h) the package installs without it and runs its ctypes loop.
"""

import os
import shutil
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LIB = "libkharbranth.so"


def _library():
    explicit = os.environ.get("KH_LIB")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    path = os.path.join(target, "release", LIB)
    if not os.path.exists(path):
        subprocess.run(["cargo", "build", "--release", "--lib"], cwd=ROOT, check=True)
    return path


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        dest = os.path.join(self.build_lib, "kharbranth", LIB)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(_library(), dest)


class BinaryDistribution(Distribution):
    # The bundled .so makes the wheel platform-specific.
    def has_ext_modules(self):
        return True


SPEEDUPS = Extension(
    "kharbranth._speedups",
    ["kharbranth/_speedups.c"],
    extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra"],
    optional=True,
)

setup(cmdclass={"build_py": BuildWithLibrary}, distclass=BinaryDistribution,
      ext_modules=[SPEEDUPS])
