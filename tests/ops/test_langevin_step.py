"""The fused Langevin step on every built backend against the float64 reference."""
import math

import pytest
import torch

from ebmfast_testing import TOLERANCES, built_backends, device_for
from ebmfast.ops import langevin_step, langevin_step_ref, philox_normal, philox_normal_ref
from ebmfast.ops.langevin_step import parse_clamp, parse_grad_clip

BACKENDS = [b for b in built_backends() if b != "ref"]
SHAPES = [(1, 1), (3, 5), (7, 13, 3), (2, 3, 5, 7), (257, 33)]
CLIPS = [None, 0.3, ("norm", 0.8)]
CLAMPS = [None, (-0.6, 0.7), (None, 0.25)]


def _ref64(x, g, step, noise_scale, noise, seed, offset, clamp, clip):
    lo, hi = parse_clamp(clamp)
    mode, c = parse_grad_clip(clip)
    return langevin_step_ref(x.double(), g.double(), step, noise_scale, None if noise is None else noise.double(),
                             seed, offset, lo, hi, mode, c)


def _inputs(shape, dtype, device, scale=1.0):
    x = (torch.randn(shape, dtype=torch.float64) * scale).to(dtype).to(device)
    g = (torch.randn(shape, dtype=torch.float64) * 2).to(dtype).to(device)
    return x, g


def _check(out, ref, dtype, where):
    atol, rtol = TOLERANCES[dtype]
    torch.testing.assert_close(out.double().cpu(), ref.cpu(), atol=atol, rtol=rtol, msg=lambda m: f"{where}: {m}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference_generated_noise(backend, dtype, shape):
    dev = device_for(backend)
    x, g = _inputs(shape, dtype, dev)
    for clip in CLIPS:
        for clamp in CLAMPS:
            out = langevin_step(x, g, 0.07, 0.3, clamp=clamp, grad_clip=clip, seed=1234, offset=9, backend=backend)
            ref = _ref64(x, g, 0.07, 0.3, None, 1234, 9, clamp, clip)
            _check(out, ref, dtype, f"{backend} {dtype} {shape} clip={clip} clamp={clamp}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_matches_reference_given_noise(backend, dtype):
    dev = device_for(backend)
    for shape in [(1, 1), (5, 3, 2), (130, 7)]:
        x, g = _inputs(shape, dtype, dev)
        noise = torch.randn(shape, dtype=torch.float64).to(dtype).to(dev)
        for clip in CLIPS:
            out = langevin_step(x, g, 0.05, 0.2, clamp=(-1.0, 1.5), grad_clip=clip, noise=noise, backend=backend)
            assert out.dtype == dtype and out.shape == x.shape
            ref = _ref64(x, g, 0.05, 0.2, noise, 0, 0, (-1.0, 1.5), clip)
            _check(out, ref.to(dtype).double() if dtype in (torch.float16, torch.bfloat16) else ref, dtype,
                   f"{backend} {dtype} {shape} clip={clip}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_inplace_equals_out_of_place(backend):
    dev = device_for(backend)
    x, g = _inputs((33, 7), torch.float32, dev)
    out = langevin_step(x, g, 0.1, 0.5, clamp=(-1, 1), grad_clip=("norm", 1.0), seed=5, offset=3, backend=backend)
    y = x.clone()
    ret = langevin_step(y, g, 0.1, 0.5, clamp=(-1, 1), grad_clip=("norm", 1.0), seed=5, offset=3, inplace=True,
                        backend=backend)
    assert ret.data_ptr() == y.data_ptr()
    torch.testing.assert_close(y, out, atol=0, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_philox_stream_agrees_with_reference(backend, dtype):
    dev = device_for(backend)
    for shape, seed, offset in [((1,), 0, 0), ((7, 13), 123, 5), ((3, 1001), 2**40 + 7, 2**35 + 1)]:
        z = philox_normal(torch.empty(shape, dtype=dtype, device=dev), seed, offset, backend=backend)
        ref = philox_normal_ref(shape, seed, offset, dtype=torch.float64)
        _check(z, ref, dtype, f"{backend} {dtype} {shape}")


def test_philox_stream_is_standard_normal():
    scipy_stats = pytest.importorskip("scipy.stats")
    z = philox_normal_ref((200_000,), seed=42, offset=3)
    assert abs(z.mean().item()) < 5 / math.sqrt(z.numel())
    assert abs(z.std().item() - 1) < 0.01
    assert scipy_stats.kstest(z.numpy(), "norm").pvalue > 1e-3
    # different offsets (steps) and seeds give uncorrelated streams
    z2 = philox_normal_ref((200_000,), seed=42, offset=4)
    z3 = philox_normal_ref((200_000,), seed=43, offset=3)
    assert abs(torch.corrcoef(torch.stack([z, z2, z3]))[0, 1:]).max() < 0.01


def test_cpu_and_triton_generate_the_same_noise():
    if not {"cpu", "triton"} <= set(BACKENDS):
        pytest.skip("needs both the cpu extension and triton")
    like = torch.empty(4, 1025, device=device_for("triton"))
    a = philox_normal(like.cpu(), 77, 11, backend="cpu")
    b = philox_normal(like, 77, 11, backend="triton").cpu()
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_noise_scale_zero_is_exact_descent(backend):
    x, g = _inputs((10, 4), torch.float64, device_for(backend))
    out = langevin_step(x, g, 0.5, 0.0, seed=3, backend=backend)
    torch.testing.assert_close(out, x - 0.5 * g, atol=1e-15, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_propagates_like_torch_clamp(backend):
    x = torch.tensor([[0.0, float("nan"), 2.0]], device=device_for(backend))
    g = torch.zeros_like(x)
    out = langevin_step(x, g, 0.1, 0.0, clamp=(-1, 1), backend=backend)
    assert torch.isnan(out[0, 1]) and out[0, 2] == 1.0, backend


@pytest.mark.parametrize("clip", [None, 0.4, ("norm", 1.1)])
def test_autograd_matches_reference(clip):
    backend = "cpu" if "cpu" in BACKENDS else "ref"
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    g = (torch.randn(6, 5, dtype=torch.float64) * 2).requires_grad_(True)
    noise = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 5, dtype=torch.float64)
    out = langevin_step(x, g, 0.3, 0.7, clamp=(-1.2, 1.0), grad_clip=clip, noise=noise, backend=backend)
    ref = _ref64(x, g, 0.3, 0.7, noise, 0, 0, (-1.2, 1.0), clip)
    got = torch.autograd.grad((out * w).sum(), (x, g, noise))
    want = torch.autograd.grad((ref * w).sum(), (x, g, noise))
    for a, b, name in zip(got, want, ("x", "grad", "noise")):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10, msg=lambda m: f"d/d{name}: {m}")


def test_gradcheck_norm_clip():
    """gradcheck and gradgradcheck of the public op on the CPU kernel (its LangevinStepFn)."""
    if "cpu" not in BACKENDS:
        pytest.skip("compiled cpu op not built")
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    g = (torch.randn(4, 3, dtype=torch.float64) * 2).requires_grad_(True)

    def f(x, g):
        return langevin_step(x, g, 0.2, grad_clip=("norm", 1.0), backend="cpu")

    assert torch.autograd.gradcheck(f, (x, g))
    assert torch.autograd.gradgradcheck(f, (x, g))


def test_raw_kernel_refuses_to_be_differentiated():
    """The backend kernel has no autograd of its own: back-propagating through it raises instead of
    returning no gradient (the public op differentiates through LangevinStepFn)."""
    if "cpu" not in BACKENDS:
        pytest.skip("compiled cpu op not built")
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.ops.ebmfast.langevin_step(x, torch.randn_like(x), 0.2, 0.0, None, 0, 0, None, None, 0, 0.0)
    with pytest.raises(RuntimeError, match="derivative for ebmfast::langevin_step is not implemented"):
        y.sum().backward()


def test_opcheck_cpu_op():
    if "cpu" not in BACKENDS:
        pytest.skip("compiled cpu op not built")
    x, g = torch.randn(5, 7), torch.randn(5, 7)
    noise = torch.randn(5, 7)
    torch.library.opcheck(torch.ops.ebmfast.langevin_step.default,
                          (x, g, 0.1, 0.2, None, 3, 1, -1.0, 1.0, 1, 0.5))
    torch.library.opcheck(torch.ops.ebmfast.langevin_step.default,
                          (x.double(), g.double(), 0.1, 0.2, noise.double(), 3, 1, None, None, 2, 0.5))
    torch.library.opcheck(torch.ops.ebmfast.langevin_step_.default, (x.clone(), g, 0.1, 0.2, None, 3, 1, None, 1.0,
                                                                     0, 0.0))


def test_opcheck_triton_op():
    if "triton" not in BACKENDS:
        pytest.skip("triton not importable")
    from ebmfast.ops._triton.langevin_launch import triton_ops

    op = triton_ops()[0]
    x, g = torch.randn(5, 7), torch.randn(5, 7)
    torch.library.opcheck(op, (x, g, 0.1, 0.2, None, 3, 1, -1.0, 1.0, 1, 0.5),
                          test_utils=("test_schema", "test_faketensor"))


def test_torch_compile_fullgraph():
    if "cpu" not in BACKENDS:
        pytest.skip("compiled cpu op not built")

    def step(x, g):
        y = torch.ops.ebmfast.langevin_step(x * 1.0, g, 0.1, 0.3, None, 7, 2, -2.0, 2.0, 0, 0.0)
        return y.sum(1)

    compiled = torch.compile(step, fullgraph=True, backend="inductor")
    x, g = torch.randn(16, 3), torch.randn(16, 3)
    torch.testing.assert_close(compiled(x, g), step(x, g))


BAD = [
    (dict(step_size=0.0), ValueError, "step_size must be > 0"),
    (dict(step_size=-1.0), ValueError, "step_size must be > 0"),
    (dict(step_size=float("nan")), ValueError, "step_size must be finite"),
    (dict(noise_scale=-0.1), ValueError, "noise_scale must be >= 0"),
    (dict(clamp=(1.0, 1.0)), ValueError, "lo < hi"),
    (dict(clamp=(1.0,)), ValueError, "clamp must be None or a pair"),
    (dict(grad_clip=0.0), ValueError, "grad_clip must be > 0"),
    (dict(grad_clip=("max", 1.0)), ValueError, "grad_clip must be None"),
    (dict(seed=-1), ValueError, "seed must be in"),
    (dict(backend="gpu"), ValueError, "not a backend"),
]


@pytest.mark.parametrize("kwargs,exc,msg", BAD)
def test_bad_arguments(kwargs, exc, msg):
    args = dict(step_size=0.1, noise_scale=0.1)
    args.update(kwargs)
    with pytest.raises(exc, match=msg):
        langevin_step(torch.randn(3, 2), torch.randn(3, 2), **args)


def test_bad_tensors():
    with pytest.raises(ValueError, match="grad must have the shape of x"):
        langevin_step(torch.randn(3, 2), torch.randn(3, 3), 0.1)
    with pytest.raises(TypeError, match="grad must have the dtype of x"):
        langevin_step(torch.randn(3, 2), torch.randn(3, 2, dtype=torch.float64), 0.1)
    with pytest.raises(ValueError, match="noise must match x"):
        langevin_step(torch.randn(3, 2), torch.randn(3, 2), 0.1, 0.1, noise=torch.randn(2, 3))
    with pytest.raises(ValueError, match="inplace=True needs an x that does not require grad"):
        langevin_step(torch.randn(3, 2, requires_grad=True), torch.randn(3, 2), 0.1, inplace=True)


def test_explicit_backend_that_cannot_run_says_why():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: cuda can run")
    with pytest.raises(RuntimeError, match="cuda.*cannot run here.*CUDA tensors"):
        langevin_step(torch.randn(3, 2), torch.randn(3, 2), 0.1, backend="cuda")


def test_env_override(monkeypatch):
    monkeypatch.setenv("EBMFAST_BACKEND", "ref")
    from ebmfast.ops import _dispatch

    langevin_step(torch.randn(3, 2), torch.randn(3, 2), 0.1)
    assert _dispatch.LAST_CHOICE[("langevin_step", "cpu")] == "ref"
    monkeypatch.setenv("EBMFAST_BACKEND", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="EBMFAST_BACKEND='cuda' cannot run here"):
            langevin_step(torch.randn(3, 2), torch.randn(3, 2), 0.1)


def test_reference_philox_known_answers():
    """Random123's Philox4x32-10 known-answer vectors (the C++ header passes the same in ctest)."""
    from ebmfast.ops.philox import philox4x32_10

    cases = [
        (0, 0, 0, [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
        (2**64 - 1, 2**64 - 1, 2**64 - 1, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
        (0x85A308D3243F6A88, 0x0370734413198A2E, 0x299F31D0A4093822, [0xD16CFE09, 0x94FDCCEB, 0x5001E420,
                                                                       0x24126EA1]),
    ]
    for group, offset, seed, want in cases:
        g = torch.tensor([group - 2**64 if group >= 2**63 else group], dtype=torch.int64)
        got = [int(w.item()) for w in philox4x32_10(g, offset, seed)]
        assert got == want, f"group={group:#x}: {[hex(v) for v in got]}"
