"""The fused Langevin / gradient step: reference, registration, autograd, public function.

    x_new = clamp(x - step_size * clip(grad) + noise_scale * xi, lo, hi)

One pass over memory on every compiled backend (the eager PyTorch expression makes
about five). `xi` is read from `noise` or generated in the kernel from (seed, offset)
by ebmfast's Philox stream (ebmfast/ops/philox.py), identical on CPU, CUDA and Triton
up to rounding.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _ext
from ..core import check_scalar, check_seed
from ..core.checks import SEED_MAX
from . import _dispatch
from .philox import philox_normal_ref

CLIP_NONE, CLIP_VALUE, CLIP_NORM = 0, 1, 2


# --------------------------------------------------------------------------- reference
def langevin_step_ref(
    x: torch.Tensor,
    grad: torch.Tensor,
    step_size: float,
    noise_scale: float,
    noise: Optional[torch.Tensor],
    seed: int,
    offset: int,
    clamp_min: Optional[float],
    clamp_max: Optional[float],
    clip_mode: int,
    clip_value: float,
) -> torch.Tensor:
    """Pure PyTorch reference (differentiable through autograd). Same arguments as the op.

    Computes in float64 for float64 inputs and float32 otherwise, like the kernels.
    """
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    g = grad.to(acc)
    if clip_mode == CLIP_VALUE:
        g = g.clamp(-clip_value, clip_value)
    elif clip_mode == CLIP_NORM:
        norms = g.reshape(g.shape[0], -1).norm(dim=1)
        scale = clip_value / norms.clamp_min(clip_value)
        g = g * scale.reshape((-1,) + (1,) * (g.dim() - 1))
    y = x.to(acc) - step_size * g
    if noise is not None:
        y = y + noise_scale * noise.to(acc)
    elif noise_scale != 0.0:
        y = y + noise_scale * philox_normal_ref(x.shape, seed, offset, dtype=acc, device=x.device)
    if clamp_min is not None or clamp_max is not None:
        y = y.clamp(clamp_min, clamp_max)
    return y.to(x.dtype)


def _backward(ctx, gy):
    """VJP of the step w.r.t. (x, grad, noise); differentiable, so chains can be differentiated twice."""
    out, grad = ctx.saved_tensors
    # clamp passes the gradient where the output is not pinned to a bound
    mask = torch.ones_like(out, dtype=torch.bool)
    if ctx.lo is not None:
        mask = mask & (out != ctx.lo)
    if ctx.hi is not None:
        mask = mask & (out != ctx.hi)
    gy = gy * mask
    g_x = gy
    v = -ctx.step_size * gy
    if ctx.clip_mode == CLIP_VALUE:
        g_grad = v * (grad.abs() <= ctx.clip_value)
    elif ctx.clip_mode == CLIP_NORM:
        # d(s(g) g): s (v - g (g.v) / |g|^2) outside the ball, v inside
        flat_g, flat_v = grad.reshape(grad.shape[0], -1), v.reshape(v.shape[0], -1)
        n2 = (flat_g * flat_g).sum(1, keepdim=True)
        n = n2.sqrt()
        outside = n > ctx.clip_value
        s = ctx.clip_value / torch.where(outside, n, torch.full_like(n, ctx.clip_value))
        proj = flat_g * (flat_g * flat_v).sum(1, keepdim=True) / torch.where(outside, n2, torch.ones_like(n2))
        g_grad = torch.where(outside, s * (flat_v - proj), flat_v).reshape(grad.shape)
    else:
        g_grad = v
    g_noise = ctx.noise_scale * gy if ctx.has_noise else None
    return g_x, g_grad, g_noise


def fake_step(x, grad, step_size, noise_scale, noise, seed, offset, lo, hi, clip_mode, clip_value):
    torch._check(x.shape == grad.shape, lambda: "grad must have the shape of x")
    return torch.empty_like(x)


def _fake_inplace(x, grad, step_size, noise_scale, noise, seed, offset, lo, hi, clip_mode, clip_value):
    return None


if _ext.available():
    torch.library.register_fake("ebmfast::langevin_step")(fake_step)
    torch.library.register_fake("ebmfast::langevin_step_")(_fake_inplace)
    torch.library.register_fake("ebmfast::philox_normal")(lambda like, seed, offset: torch.empty_like(like))


def _triton_ops():
    """(out_of_place, inplace) Triton step ops, registered on first use."""
    from ._triton.langevin_launch import triton_ops

    return triton_ops()


class LangevinStepFn(torch.autograd.Function):
    """The step as one autograd node on a compiled backend (the one autograd registration of the op):
    forward = the backend's kernel, backward = `_backward`, whatever the backend."""

    @staticmethod
    def forward(ctx, x, grad, noise, backend, args):
        step_size, noise_scale, _noise, _seed, _offset, lo, hi, clip_mode, clip_value = args
        out = _kernel(backend, x, grad, (step_size, noise_scale, noise) + args[3:])
        ctx.save_for_backward(out, grad)
        ctx.step_size, ctx.noise_scale, ctx.lo, ctx.hi = step_size, noise_scale, lo, hi
        ctx.clip_mode, ctx.clip_value = clip_mode, clip_value
        ctx.has_noise = noise is not None
        return out

    @staticmethod
    def backward(ctx, gy):
        g_x, g_grad, g_noise = _backward(ctx, gy)
        return g_x, g_grad, g_noise, None, None


# --------------------------------------------------------------------------- argument checks
def parse_clamp(clamp) -> tuple[Optional[float], Optional[float]]:
    """None or (lo, hi) with either side None -> (lo, hi) floats; checks lo < hi."""
    if clamp is None:
        return None, None
    if not isinstance(clamp, (tuple, list)) or len(clamp) != 2:
        raise ValueError(f"clamp must be None or a pair (lo, hi), got {clamp!r}")
    lo = None if clamp[0] is None else check_scalar("clamp[0] (lo)", clamp[0])
    hi = None if clamp[1] is None else check_scalar("clamp[1] (hi)", clamp[1])
    if lo is not None and hi is not None and not lo < hi:
        raise ValueError(f"clamp needs lo < hi, got lo={lo}, hi={hi}")
    return lo, hi


def parse_grad_clip(grad_clip) -> tuple[int, float]:
    """None | c (elementwise) | ("value", c) | ("norm", c) -> (clip_mode, c)."""
    if grad_clip is None:
        return CLIP_NONE, 0.0
    if isinstance(grad_clip, (tuple, list)):
        if len(grad_clip) != 2 or grad_clip[0] not in ("value", "norm"):
            raise ValueError(f"grad_clip must be None, c, ('value', c) or ('norm', c), got {grad_clip!r}")
        mode = CLIP_VALUE if grad_clip[0] == "value" else CLIP_NORM
        return mode, check_scalar("grad_clip value", grad_clip[1], positive=True)
    return CLIP_VALUE, check_scalar("grad_clip", grad_clip, positive=True)


def draw_seed(generator: Optional[torch.Generator] = None) -> int:
    """A seed from torch's generator, so torch.manual_seed makes ebmfast noise repeatable."""
    return int(torch.randint(0, SEED_MAX, (1,), generator=generator).item())


# --------------------------------------------------------------------------- public function
def langevin_step(
    x: torch.Tensor,
    grad: torch.Tensor,
    step_size: float,
    noise_scale: float = 0.0,
    clamp=None,
    grad_clip=None,
    noise: Optional[torch.Tensor] = None,
    seed: Optional[int] = None,
    offset: int = 0,
    inplace: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """One fused Langevin / gradient step.

    Args:
        x: [B, ...] current state (any shape; float32/float64/float16/bfloat16).
        grad: grad_x E(x), same shape, dtype and device as x.
        step_size: > 0, multiplies the (clipped) gradient.
        noise_scale: >= 0, multiplies xi ~ N(0, I) (0 = noise-free descent).
        clamp: None or (lo, hi); either side may be None.
        grad_clip: None; c or ("value", c): clip each element to [-c, c];
            ("norm", c): scale each sample's gradient to L2 norm <= c.
        noise: optional xi tensor like x; else generated in-kernel from (seed, offset).
        seed: int in [0, 2**63); None draws one from torch's default generator.
        offset: counter offset (use the step index so steps get independent noise).
        inplace: write into x (x must not require grad).
        backend: "auto" | "cpu" | "cuda" | "triton" | "ref" (EBMFAST_BACKEND overrides "auto").

    Returns:
        x_new shaped like x (x itself when inplace).

    Equivalent to::

        g = grad.clamp(-c, c)  # or per-sample norm clip
        (x - step_size * g + noise_scale * xi).clamp(lo, hi)
    """
    if not isinstance(x, torch.Tensor) or not isinstance(grad, torch.Tensor):
        raise TypeError(f"x and grad must be tensors, got {type(x).__name__} and {type(grad).__name__}")
    if x.shape != grad.shape:
        raise ValueError(f"grad must have the shape of x {tuple(x.shape)}, got {tuple(grad.shape)}")
    if x.dtype != grad.dtype:
        raise TypeError(f"grad must have the dtype of x ({x.dtype}), got {grad.dtype}")
    if x.device != grad.device:
        raise ValueError(f"grad must be on the device of x ({x.device}), got {grad.device}")
    step_size = check_scalar("step_size", step_size, positive=True)
    noise_scale = check_scalar("noise_scale", noise_scale, nonneg=True)
    lo, hi = parse_clamp(clamp)
    clip_mode, clip_value = parse_grad_clip(grad_clip)
    if clip_mode == CLIP_NORM and x.dim() < 1:
        raise ValueError("grad_clip=('norm', c) needs x with a batch dim, got a 0-d tensor")
    if noise is not None:
        if noise.shape != x.shape or noise.dtype != x.dtype or noise.device != x.device:
            raise ValueError(
                f"noise must match x (shape {tuple(x.shape)}, {x.dtype}, {x.device}), got "
                f"shape {tuple(noise.shape)}, {noise.dtype}, {noise.device}"
            )
        noise = noise.contiguous()
    seed = draw_seed() if seed is None else check_seed("seed", seed)
    offset = check_seed("offset", offset)

    chosen = _dispatch.choose("langevin_step", x.device, x.dtype, backend)
    if inplace:
        if x.requires_grad and torch.is_grad_enabled():
            raise ValueError("inplace=True needs an x that does not require grad (use inplace=False in graphs)")
        if not x.is_contiguous():
            raise ValueError("inplace=True needs a contiguous x")
    return _run(chosen, x, grad, (step_size, noise_scale, noise, seed, offset, lo, hi, clip_mode, clip_value),
                inplace)


def _kernel(backend: str, x: torch.Tensor, grad: torch.Tensor, args: tuple) -> torch.Tensor:
    """The out-of-place step on a compiled backend, below autograd."""
    if backend == "triton":
        return _triton_ops()[0](x, grad, *args)
    with torch._C._AutoDispatchBelowAutograd():
        return torch.ops.ebmfast.langevin_step.default(x, grad, *args)


def _run(chosen: str, x: torch.Tensor, grad: torch.Tensor, args: tuple, inplace: bool) -> torch.Tensor:
    """Run the op on an already validated backend and argument tuple (the op schema's order)."""
    grad = grad.contiguous()
    if inplace:
        if chosen == "ref":
            x.copy_(langevin_step_ref(x, grad, *args))
        elif chosen == "triton":
            _triton_ops()[1](x, grad, *args)
        else:
            torch.ops.ebmfast.langevin_step_(x, grad, *args)
        return x
    x = x.contiguous()
    if chosen == "ref":
        return langevin_step_ref(x, grad, *args)
    noise = args[2]
    if torch.is_grad_enabled() and (x.requires_grad or grad.requires_grad
                                    or (noise is not None and noise.requires_grad)):
        return LangevinStepFn.apply(x, grad, noise, chosen, args)
    return _kernel(chosen, x, grad, args)


class Stepper:
    """`langevin_step` with its options validated and its backend chosen once, for chains.

    `stepper(x, grad, offset, inplace)` skips the per-call checks (shape/dtype/device of
    grad must match x: the sampler guarantees it), which matters when a step costs
    microseconds.
    """

    def __init__(self, like: torch.Tensor, step_size: float, noise_scale: float = 0.0, clamp=None,
                 grad_clip=None, seed: Optional[int] = None, backend: str = "auto"):
        self.step_size = check_scalar("step_size", step_size, positive=True)
        self.noise_scale = check_scalar("noise_scale", noise_scale, nonneg=True)
        self.lo, self.hi = parse_clamp(clamp)
        self.clip_mode, self.clip_value = parse_grad_clip(grad_clip)
        self.seed = draw_seed() if seed is None else check_seed("seed", seed)
        self.backend = _dispatch.choose("langevin_step", like.device, like.dtype, backend)

    def __call__(self, x: torch.Tensor, grad: torch.Tensor, offset: int, inplace: bool) -> torch.Tensor:
        args = (self.step_size, self.noise_scale, None, self.seed, offset, self.lo, self.hi, self.clip_mode,
                self.clip_value)
        return _run(self.backend, x, grad, args, inplace)


def philox_normal(like: torch.Tensor, seed: int, offset: int = 0, backend: str = "auto") -> torch.Tensor:
    """Standard normals of ebmfast's in-kernel stream, shaped like `like` (for tests and custom updates)."""
    seed, offset = check_seed("seed", seed), check_seed("offset", offset)
    chosen = _dispatch.choose("philox_normal", like.device, like.dtype, backend)
    if chosen == "ref":
        acc = torch.float64 if like.dtype == torch.float64 else torch.float32
        return philox_normal_ref(like.shape, seed, offset, dtype=acc, device=like.device).to(like.dtype)
    zeros = torch.zeros_like(like, memory_format=torch.contiguous_format)
    if chosen == "triton":
        return _triton_ops()[0](zeros, zeros, 1.0, 1.0, None, seed, offset, None, None, CLIP_NONE, 0.0)
    return torch.ops.ebmfast.philox_normal(zeros, seed, offset)
