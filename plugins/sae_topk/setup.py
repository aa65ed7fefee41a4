"""Builds the optional C++ kernels; everything else is declared in pyproject.toml.

The extensions are optional: without a C++ compiler the package still installs, and its
callers fall back to the torch operations the kernels replace (same results, slower; see
README "Performance" and ``saecore_sae_topk.native_kernels``).
"""

import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    compile_args, link_args = ["/O2", "/std:c++17"], []
else:
    # -ffp-contract=fast lets the dot products use fused multiply-adds, which ISO C++ mode disables.
    # -ldl: dlsym finds torch's OpenMP runtime (_parallel_rows.h); glibc before 2.34 keeps it in libdl.
    compile_args, link_args = ["-O3", "-std=c++17", "-ffp-contract=fast"], ["-pthread", "-ldl"]


def kernel(name: str) -> Extension:
    return Extension(
        f"saecore_sae_topk.{name}",
        sources=[f"src/saecore_sae_topk/{name}.cpp"],
        depends=["src/saecore_sae_topk/_parallel_rows.h", "src/saecore_sae_topk/_instruction_set.h"],
        language="c++",
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        optional=True,
    )


setup(ext_modules=[kernel("_row_topk"), kernel("_code_dots")])
