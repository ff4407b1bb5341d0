"""Helpers shared by the kernel tests (a uniquely named module: several conftest.py files exist)."""
import torch

from ebmfast import _ext
from ebmfast.ops import _dispatch

# (atol, rtol) of a kernel against the float64 reference, by the kernel's dtype
TOLERANCES = {
    torch.float64: (1e-12, 1e-12),
    torch.float32: (2e-5, 2e-5),
    torch.float16: (2e-2, 1e-2),
    torch.bfloat16: (1.5e-1, 2e-2),
}


def built_backends() -> list[str]:
    """Backends that can run CPU tensors in this process (cuda when a GPU is present)."""
    out = ["ref"]
    if _ext.available():
        out.append("cpu")
    if _dispatch.triton_status()[0] and _dispatch.triton_interpret():
        out.append("triton")
    if torch.cuda.is_available() and _ext.build_info().get("cuda"):
        out.append("cuda")
    return out


def device_for(backend: str) -> str:
    return "cuda" if backend == "cuda" or (backend == "triton" and torch.cuda.is_available()) else "cpu"


def random_net(d, hidden, dtype=torch.float64, bias=True, scale=1.5, seed=0):
    """Random MLP weights [w_1, D], ..., [1, w_H] and biases (larger than the default init, so that
    every activation regime is exercised), drawn in `dtype` from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    dims = (d,) + tuple(hidden) + (1,)
    ws = [scale * torch.randn(dims[i + 1], dims[i], generator=g, dtype=dtype) / dims[i] ** 0.5
          for i in range(len(dims) - 1)]
    bs = [0.5 * torch.randn(dims[i + 1], generator=g, dtype=dtype) for i in range(len(dims) - 1)] if bias else []
    return ws, bs
