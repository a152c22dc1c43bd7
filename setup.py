"""Build hook: compile the C core in csrc/ through cffi (API mode) at install time."""

from __future__ import annotations

import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class BuildExtWithClearErrors(build_ext):
    """Turn a missing or failing C compiler into one clear message instead of a traceback."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # distutils raises several unrelated types here
            sys.stderr.write(
                "\nqkdnode: building the C core (csrc/) failed: "
                f"{exc}\n"
                "qkdnode needs a C compiler and the Python headers at install time "
                "(Debian/Ubuntu: apt-get install build-essential python3-dev; "
                "Fedora: dnf install gcc python3-devel; macOS: xcode-select --install).\n\n"
            )
            raise


setup(
    cffi_modules=["csrc/build_ffi.py:ffibuilder"],
    cmdclass={"build_ext": BuildExtWithClearErrors},
)
