"""Every raw-pointer CUDA file (csrc/cuda/*.cu) must compile with nvcc on its own, without torch,
with setup.py's nvcc flags and no warnings from our sources:

    nvcc -c -O3 -std=c++20 --expt-relaxed-constexpr -lineinfo -DEBMFAST_WITH_CUDA -I csrc/include
         -arch=sm_90 csrc/cuda/<file>.cu

This is the check that runs without a GPU in the README's test command: the kernels' build stays
independent of torch headers. `.ci/run` also builds the whole extension for sm_80 and sm_90
against the CUDA build of torch (tests/cuda_build_check.py). Skipped only when nvcc is not installed. The torch launchers
(csrc/cuda/*.cpp) need a CUDA build of torch to link; test_cuda_launchers_typecheck below
type-checks them against the CPU torch's headers (it found a `double / Tensor` that only a CUDA
build would have rejected).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NVCC = shutil.which("nvcc")
CU_FILES = sorted((ROOT / "csrc" / "cuda").glob("*.cu"))
SETUP_NVCC_FLAGS = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-lineinfo", "-DEBMFAST_WITH_CUDA"]  # setup.py's


def test_the_flags_are_setup_pys():
    text = (ROOT / "setup.py").read_text()
    assert '["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-lineinfo"]' in text and '"-DEBMFAST_WITH_CUDA"' in text


def test_there_are_cuda_files():
    assert CU_FILES, f"no .cu files under {ROOT / 'csrc' / 'cuda'}"


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ["sm_90"])
@pytest.mark.parametrize("cu", CU_FILES, ids=lambda p: p.name)
def test_nvcc_compiles(cu: Path, arch: str, tmp_path: Path):
    cmd = [NVCC, "-c", *SETUP_NVCC_FLAGS, "-I", str(ROOT / "csrc" / "include"), f"-arch={arch}", str(cu),
           "-o", str(tmp_path / (cu.stem + ".o"))]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    ours = [line for line in out.splitlines() if "warning" in line and "csrc" in line]
    assert not ours, f"nvcc warnings in {cu.name} for {arch}:\n" + "\n".join(ours[:20])


# ---- the torch launchers (csrc/cuda/*.cpp): a syntax and type check without a CUDA torch build
GXX = shutil.which("g++")
CPP_FILES = sorted((ROOT / "csrc" / "cuda").glob("*.cpp"))


def _cuda_include_dir():
    """The toolkit's include dir: $CUDA_HOME, else asked from nvcc (which may be a wrapper script)."""
    import os

    if NVCC is None:
        return None
    homes = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    res = subprocess.run([NVCC, "--dryrun", "-c", "x.cu"], capture_output=True, text=True, timeout=60)
    homes += [ln.split("=", 1)[1].strip() for ln in (res.stdout + res.stderr).splitlines() if "TOP=" in ln]
    homes.append(str(Path(NVCC).resolve().parents[1]))
    for h in filter(None, homes):
        inc = Path(h) / "include"
        if (inc / "cuda_runtime.h").exists():
            return inc
    return None


@pytest.mark.skipif(GXX is None or _cuda_include_dir() is None, reason="needs g++ and the CUDA toolkit headers")
@pytest.mark.parametrize("cpp", CPP_FILES, ids=lambda p: p.name)
def test_cuda_launchers_typecheck(cpp: Path):
    """g++ -fsyntax-only on each launcher against the CPU torch's headers (which include c10's CUDA
    headers) and the toolkit's: catches errors in the code that only a CUDA build compiles.
    C10_CUDA_NO_CMAKE_CONFIGURE_FILE: c10's build-generated CUDA macros header exists only in CUDA
    builds of torch, and nothing the launchers use needs it."""
    from torch.utils.cpp_extension import include_paths

    cmd = [GXX, "-std=c++20", "-fsyntax-only", "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE"]
    cmd += [f"-I{p}" for p in include_paths()]
    cmd += ["-I", str(_cuda_include_dir()), "-I", str(ROOT / "csrc" / "include"), "-I", str(ROOT / "csrc" / "cuda"),
            str(cpp)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{cpp.name} does not type-check:\n{res.stderr[-4000:]}"


# headers that pull in cuBLAS / cuSPARSE / cuSOLVER, which a minimal CUDA toolkit does not ship
HEAVY_INCLUDES = ("ATen/cuda/", "cublas", "cusparse", "cusolver")


@pytest.mark.parametrize("src", CPP_FILES + CU_FILES + sorted((ROOT / "csrc" / "cuda").glob("*.h*")),
                         ids=lambda p: p.name)
def test_cuda_sources_need_only_the_base_toolkit(src: Path):
    """The launchers take the stream and device guard from c10/cuda (CUDAStream.h, CUDAGuard.h), so
    the extension builds against a toolkit without the cuBLAS/cuSPARSE/cuSOLVER headers that
    ATen/cuda/CUDAContext.h includes."""
    bad = [line.strip() for line in src.read_text().splitlines()
           if line.lstrip().startswith("#include") and any(h in line for h in HEAVY_INCLUDES)]
    assert not bad, f"{src.name} includes {bad}"
