"""pytest options of the benchmarks (`--bench-device cpu|cuda`, `--bench-quick`, ...) and the `device` fixture."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  (also puts the repository root on sys.path)

import torch  # noqa: E402


def pytest_addoption(parser):
    g = parser.getgroup("ebmfast benchmarks")
    g.addoption("--bench-device", default="cpu", choices=("cpu", "cuda"), help="device to benchmark (default cpu)")
    g.addoption("--bench-quick", action="store_true", help="smaller workloads (smoke-sized)")
    g.addoption("--bench-threads", default="2,1",
                help="comma-separated torch thread counts of the CPU benchmarks (default 2,1)")
    g.addoption("--bench-chain-threads", default="",
                help="langevin_step: thread counts of the whole-chain part (default: every --bench-threads)")
    g.addoption("--bench-no-compile", action="store_true", help="langevin_step: no torch.compile row")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """On CUDA, pytest-benchmark reads torch.utils.benchmark's synchronising clock (set before it starts)."""
    if config.getoption("bench_device") != "cuda":
        return
    if not torch.cuda.is_available():
        raise pytest.UsageError("--bench-device cuda: no CUDA device visible to torch")
    config.option.benchmark_timer = _common.CUDA_TIMER  # pytest-benchmark loads it by its dotted name


@pytest.fixture(scope="module")
def device(request) -> torch.device:
    return torch.device(request.config.getoption("bench_device"))
