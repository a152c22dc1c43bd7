"""cffi API-mode builder for the C core: every csrc/*.c is compiled into postprocessing._ccore.

Declarations are written once, in each header between the `CFFI-BEGIN` and `CFFI-END` markers,
and fed to cffi from there, so the C prototypes and the Python binding cannot drift apart.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
_MARKED = re.compile(r"/\*\s*CFFI-BEGIN\s*\*/(.*?)/\*\s*CFFI-END\s*\*/", re.S)


def _declarations() -> str:
    parts = []
    for header in sorted(HERE.glob("*.h")):
        parts.extend(_MARKED.findall(header.read_text()))
    return "\n".join(parts)


def _compile_args() -> list[str]:
    if sys.platform == "win32":
        return ["/O2"]
    # No -march=native: the wheel must run on any x86-64 / arm64 CPU; the fast paths use
    # per-function target attributes and are chosen at run time (csrc/cpu_features.c).
    return ["-O3", "-std=c11", "-fno-strict-aliasing", "-Wall", "-Wno-unused-function"]


ffibuilder = FFI()
ffibuilder.cdef(_declarations())
_sources = sorted(str(p.relative_to(HERE.parent)) for p in HERE.glob("*.c"))
ffibuilder.set_source(
    "postprocessing._ccore",
    "\n".join(f'#include "{h.name}"' for h in sorted(HERE.glob("*.h"))),
    sources=_sources,
    include_dirs=[os.path.relpath(HERE, HERE.parent)],
    extra_compile_args=_compile_args(),
)

if __name__ == "__main__":
    os.chdir(HERE.parent)
    ffibuilder.compile(verbose=True)
