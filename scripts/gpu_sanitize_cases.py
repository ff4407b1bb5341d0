"""Call every CUDA kernel of ebmfast once, on small inputs, for compute-sanitizer.

    compute-sanitizer --tool memcheck --error-exitcode 1 python3 scripts/gpu_sanitize_cases.py
    compute-sanitizer --tool racecheck --error-exitcode 1 python3 scripts/gpu_sanitize_cases.py

The ops are called through torch.ops.ebmfast with CUDA tensors, so each call reaches the CUDA
kernel itself (no backend choice in between). Cases: the Langevin step (Philox noise, given noise,
in place, norm clipping), Philox normals, the MLP energy + grad (with and without saved
activations), the chain with trajectories and energies (B = 4224 float32 and float64, which gives
several rows per warp on a 132-SM GPU), the analytic double backward (saved and recomputed
forward) and the gradient-norm penalty through autograd. Exits non-zero if a kernel is missing
or an output is not finite.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ebmfast  # noqa: E402  (registers torch.ops.ebmfast)
from ebmfast.energies.mlp import MLPEnergy  # noqa: E402
from ebmfast.ops.grad_norm_penalty import grad_norm_penalty  # noqa: E402
from ebmfast.ops.mlp_activations import SILU, TANH  # noqa: E402

OPS = ("langevin_step", "langevin_step_", "philox_normal", "mlp_energy_grad", "mlp_energy_grad_backward",
       "mlp_langevin_chain")
DEV = torch.device("cuda")
ops = torch.ops.ebmfast


def net(d, hidden, dtype, seed=0):
    """Random MLP weights and biases on the GPU (nn.Linear layout)."""
    g = torch.Generator().manual_seed(seed)
    dims = (d, *hidden, 1)
    ws = [torch.randn(dims[i + 1], dims[i], generator=g, dtype=dtype) / dims[i] ** 0.5 for i in range(len(dims) - 1)]
    bs = [0.5 * torch.randn(dims[i + 1], generator=g, dtype=dtype) for i in range(len(dims) - 1)]
    return [w.to(DEV) for w in ws], [b.to(DEV) for b in bs]


def finite(name, *tensors):
    for t in tensors:
        if t.numel() and not torch.isfinite(t).all():
            raise SystemExit(f"{name}: non-finite output")
    print(f"ok {name}")


def langevin_cases():
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(37, 5, device=DEV, dtype=dtype)
        grad = torch.randn_like(x)
        noise = torch.randn_like(x)
        finite(f"philox_normal {dtype}", ops.philox_normal(x, 7, 3))
        finite(f"langevin_step philox {dtype}", ops.langevin_step(x, grad, 0.01, 0.1, None, 7, 0, -3.0, 3.0, 0, 0.0))
        finite(f"langevin_step noise, norm clip {dtype}",
               ops.langevin_step(x, grad, 0.01, 0.1, noise, 0, 0, None, None, 2, 1.0))
        y = x.clone()
        ops.langevin_step_(y, grad, 0.01, 0.1, None, 7, 1, None, 2.0, 1, 0.5)
        finite(f"langevin_step_ in place {dtype}", y)


def mlp_cases():
    for dtype in (torch.float32, torch.float64):
        ws, bs = net(3, (32, 17), dtype)
        x = torch.randn(300, 3, device=DEV, dtype=dtype)
        e, g, saved = ops.mlp_energy_grad(x, ws, bs, SILU, 0.01, True)
        finite(f"mlp_energy_grad save {dtype}", e, g, saved)
        finite(f"mlp_energy_grad {dtype}", *ops.mlp_energy_grad(x, ws, [], TANH, 0.01, False)[:2])
        ge, gg = torch.randn_like(e), torch.randn_like(g)
        gx, gw, gb = ops.mlp_energy_grad_backward(x, ws, bs, SILU, 0.01, saved, ge, gg)
        finite(f"mlp_energy_grad_backward saved {dtype}", gx, *gw, *gb)
        gx, gw, gb = ops.mlp_energy_grad_backward(x, ws, bs, SILU, 0.01, saved.new_empty(0), ge, gg)
        finite(f"mlp_energy_grad_backward recomputed {dtype}", gx, *gw, *gb)


def chain_cases():
    # B = 4224 = 132 SMs * 8 warps * 4 rows: float32 takes 4 rows per warp there (float64 2)
    for dtype in (torch.float32, torch.float64):
        ws, bs = net(2, (64, 64), dtype, seed=1)
        x0 = torch.randn(4224, 2, device=DEV, dtype=dtype)
        x, traj, ens, bad = ops.mlp_langevin_chain(x0, ws, bs, SILU, 0.01, 5, 0.01, 0.1, 0.0, 3, -4.0, 4.0, 2, 1.0,
                                                   2, True, True, True)
        finite(f"mlp_langevin_chain B=4224 trajectories {dtype}", x, traj, ens)
        if int(bad) != -1:
            raise SystemExit(f"mlp_langevin_chain {dtype}: reported a non-finite step {int(bad)}")
        small = x0[:50].contiguous()
        finite(f"mlp_langevin_chain B=50 {dtype}",
               ops.mlp_langevin_chain(small, ws, [], SILU, 0.01, 3, 0.01, 0.1, 0.5, 3, None, None, 0, 0.0, 1,
                                      False, False, False)[0])


def penalty_case():
    os.environ["EBMFAST_BACKEND"] = "cuda"  # the backward too: its CUDA kernel, not Triton's
    energy = MLPEnergy(2, hidden=(32, 32), activation="silu").to(DEV)
    x = torch.randn(200, 2, device=DEV, requires_grad=True)
    p = grad_norm_penalty(energy, x, lipschitz=1.0, backend="cuda")
    p.backward()
    finite("grad_norm_penalty forward + backward (cuda)", p, x.grad, *(q.grad for q in energy.parameters()))


def main():
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    missing = [op for op in OPS if not torch._C._dispatch_has_kernel_for_dispatch_key(f"ebmfast::{op}", "CUDA")]
    if missing:
        raise SystemExit(f"no CUDA kernel registered for: {', '.join(missing)}")
    langevin_cases()
    mlp_cases()
    chain_cases()
    penalty_case()
    torch.cuda.synchronize()
    print("all CUDA kernels ran")


if __name__ == "__main__":
    main()
