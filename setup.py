"""Build ebmfast._C: CPU kernels always, CUDA kernels when a CUDA torch and toolkit exist.

Environment flags (see README):
  EBMFAST_NO_EXT=1   build nothing; the package runs on its PyTorch reference backend
  FORCE_CUDA=1       build the CUDA kernels even when no GPU is visible (needs nvcc + CUDA torch);
                     with no GPU and no TORCH_CUDA_ARCH_LIST, for sm_80 and sm_90 ("8.0;9.0")
  EBMFAST_NO_CUDA=1  never build the CUDA kernels
  MAX_JOBS=N         parallel compile jobs (ninja)
"""
import glob
import os
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


DEFAULT_CUDA_ARCH_LIST = "8.0;9.0"


def _default_cuda_arch_list(torch):
    """torch picks the CUDA architectures from the visible GPUs; with none (FORCE_CUDA=1 on a build
    machine) and no TORCH_CUDA_ARCH_LIST it fails inside torch.utils.cpp_extension. Build for
    Ampere and Hopper then, and say so."""
    if os.environ.get("TORCH_CUDA_ARCH_LIST") or torch.cuda.is_available():
        return
    os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCH_LIST
    print(f"ebmfast: FORCE_CUDA=1 and no visible GPU: building the CUDA kernels for TORCH_CUDA_ARCH_LIST="
          f"\"{DEFAULT_CUDA_ARCH_LIST}\" (sm_80, sm_90); set TORCH_CUDA_ARCH_LIST to choose others")


def _ext_modules():
    if _flag("EBMFAST_NO_EXT"):
        print("ebmfast: EBMFAST_NO_EXT=1, building no extension (reference backend only)")
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError:
        print("ebmfast: torch not importable at build time; building no extension", file=sys.stderr)
        return [], {}

    with_cuda = not _flag("EBMFAST_NO_CUDA") and (
        _flag("FORCE_CUDA") or (torch.cuda.is_available() and CUDA_HOME is not None)
    ) and torch.version.cuda is not None
    if _flag("FORCE_CUDA") and torch.version.cuda is None:
        print(f"ebmfast: FORCE_CUDA=1 but torch {torch.__version__} is a CPU build: building the CPU kernels only",
              file=sys.stderr)
    if with_cuda:
        _default_cuda_arch_list(torch)
    csrc = "csrc"
    # csrc/*.cpp: op schemas, the autograd guard of the backend kernels and the CUDA launch plan (host
    # arithmetic, also in CPU-only builds)
    sources = sorted(glob.glob(os.path.join(csrc, "*.cpp"))) + sorted(glob.glob(os.path.join(csrc, "cpu", "*.cpp")))
    cxx = ["-O3", "-g0", "-std=c++20", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
    extra = {"cxx": cxx}
    define_macros = []
    if with_cuda:
        sources += sorted(glob.glob(os.path.join(csrc, "cuda", "*.cu")))
        sources += sorted(glob.glob(os.path.join(csrc, "cuda", "*.cpp")))
        extra["nvcc"] = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-lineinfo"]
        extra["cxx"] = cxx + ["-DEBMFAST_WITH_CUDA"]
        extra["nvcc"] += ["-DEBMFAST_WITH_CUDA"]
        Ext = CUDAExtension
    else:
        Ext = CppExtension
    ext = Ext(
        name="ebmfast._C",
        sources=sources,
        include_dirs=[os.path.join(ROOT, "csrc", "include")],
        extra_compile_args=extra,
        extra_link_args=["-fopenmp"],
        define_macros=define_macros,
        py_limited_api=True,
    )
    print(f"ebmfast: building _C ({'CPU + CUDA' if with_cuda else 'CPU'}) from {len(sources)} sources")
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _ext_modules()

setup(
    name="ebmfast",
    packages=find_packages(include=["ebmfast", "ebmfast.*"]),
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    options={"bdist_wheel": {"py_limited_api": "cp39"}} if ext_modules else {},
)
