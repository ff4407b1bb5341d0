"""The CUDA kernels of the fused MLP energy (csrc/cuda/mlp_energy_kernel.cu), run without a GPU.

g++ compiles the real .cu file against tests/ops/cuda_emu/cuda_runtime.h, which runs every
CUDA thread as an OS thread with real block/warp barriers, shuffles and atomics. That checks
the kernels' indexing, shared-memory layout, register blocking, both weight paths (resident /
staged, forced by the emulated shared-memory limit), both rows-per-warp variants (forced by the
emulated SM count), the Philox noise and the chain logic against the references of
ebmfast/ops/mlp_energy.py. Races between the lanes of a warp are checked under the emulator's
serialized lane orders (lane_order, tests/ops/cuda_emu/cuda_runtime.h) for the chain with several
rows per warp; races between warps, timing and real device code generation are not
(tests/test_nvcc_compile.py does the latter). Skipped only when g++ is absent.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from ebmfast.ops.mlp_energy import mlp_energy_grad_ref, mlp_energy_grad_saved_ref
from ebmfast.ops.mlp_langevin_chain import mlp_langevin_chain_ref

from ebmfast_testing import random_net as _net

from cuda_emu_helpers import GXX, build_harness, layout_bytes, pack_params as _pack

pytestmark = pytest.mark.skipif(GXX is None, reason="g++ is not installed")

H100 = dict(smem_optin=232448, sm_count=132)  # few particles per SM -> 1 row per warp
H100_FEW_SMS = dict(smem_optin=232448, sm_count=1)  # -> 4 (float) / 2 (double) rows per warp
STAGED = "staged"  # shared memory just big enough to stage one hidden matrix at a time


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    return build_harness(tmp_path_factory.mktemp("cuda_emu"), "mlp_harness")




def _run(harness, tmp_path, mode, x, ws, bs, act, slope, dtype, device=H100, **kw):
    widths = [w.shape[0] for w in ws[:-1]]
    hp = next(h for h in (32, 64, 128) if max(widths) <= h)
    np_dt = np.float64 if dtype == torch.float64 else np.float32
    if device == STAGED:  # one row per warp and staged weights fit, resident weights do not
        sizes, budget = layout_bytes(harness, tmp_path / "layouts", x.shape[1], len(widths), hp,
                                     8 if dtype == torch.float64 else 4)
        staged, resident = (sizes[("fwd", 1, r, True)] for r in (False, True))
        assert staged < resident, "this network has nothing to stage"
        device = dict(smem_optin=staged + budget, sm_count=1)
    cfg = dict(mode=mode, dtype="f64" if dtype == torch.float64 else "f32", B=x.shape[0], D=x.shape[1],
               NH=len(widths), HP=hp, act=act, **{f"w{i}": w for i, w in enumerate(widths)}, **device, **kw)
    (tmp_path / "config.txt").write_text("".join(f"{k} {int(v) if isinstance(v, bool) else v}\n"
                                                 for k, v in cfg.items()))
    x.numpy().astype(np_dt).tofile(tmp_path / "x.bin")
    _pack(ws, bs, slope, hp).numpy().astype(np_dt).tofile(tmp_path / "params.bin")
    res = subprocess.run([str(harness), str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = {"rc": int((tmp_path / "rc.txt").read_text())}
    for f in tmp_path.glob("*.bin"):
        if f.stem not in ("x", "params"):
            out[f.stem] = torch.from_numpy(np.fromfile(f, dtype=np_dt)).to(torch.float64)
    if (tmp_path / "bad.txt").exists():
        out["bad"] = int((tmp_path / "bad.txt").read_text())
    rc, rb, resident, smem, n_blocks = (int(v) for v in (tmp_path / "plan.txt").read_text().split())
    out["plan"] = dict(rc=rc, rb=rb, resident=bool(resident), smem=smem, n_blocks=n_blocks)
    return out


def _close(a, b, where, dtype):
    atol, rtol = (1e-12, 1e-11) if dtype == torch.float64 else (5e-5, 5e-5)
    torch.testing.assert_close(a.reshape(b.shape), b, atol=atol, rtol=rtol, msg=lambda m: f"{where}: {m}")


@pytest.mark.parametrize("act", range(7))
def test_energy_grad_every_activation_float64(harness, tmp_path, act):
    ws, bs = _net(3, (20, 33), bias=act % 2 == 0)
    x = 1.5 * torch.randn(37, 3, dtype=torch.float64)
    out = _run(harness, tmp_path, "eg", x, ws, bs, act, 0.07, torch.float64, save=1)
    assert out["rc"] == 0
    e, g = mlp_energy_grad_ref(x, ws, bs, act, 0.07)
    _close(out["e"], e, f"act {act} energy", torch.float64)
    _close(out["g"], g, f"act {act} grad", torch.float64)
    _close(out["saved"], mlp_energy_grad_saved_ref(x, ws, bs, act, 0.07), f"act {act} saved", torch.float64)


# (D, hidden, B, device): 6 layers; odd D >= 16; width 128; the staged-weights path; both RB
CASES = [(2, (7, 9, 5, 16, 3, 11), 21, H100_FEW_SMS), (19, (128, 40), 13, H100), (4, (64, 64, 50), 45, STAGED),
         (1, (32,), 70, H100_FEW_SMS)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"D{c[0]}-{len(c[1])}layers-B{c[2]}-{c[3] if c[3] == STAGED else c[3]['sm_count']}")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_energy_grad_shapes_and_weight_paths(harness, tmp_path, case, dtype):
    d, hidden, b, device = case
    ws, bs = _net(d, hidden)
    x = torch.randn(b, d, dtype=torch.float64)
    out = _run(harness, tmp_path, "eg", x, ws, bs, 2, 0.07, dtype, device=device, save=0)
    assert out["rc"] == 0
    e, g = mlp_energy_grad_ref(x, ws, bs, 2, 0.07)
    _close(out["e"], e, f"{case} energy", dtype)
    _close(out["g"], g, f"{case} grad", dtype)


def _chain(x0, ws, bs, act=2, n_steps=6, step_size=0.05, noise_scale=0.3, ref_coef=0.0, lo=None, hi=None,
           clip_mode=0, clip_value=0.0, every=2, rec_traj=1, rec_e=1, check=1, seed=2**40 + 5):
    ref = (x0, ws, bs, act, 0.07, n_steps, step_size, noise_scale, ref_coef, seed, lo, hi, clip_mode, clip_value, every,
           bool(rec_traj), bool(rec_e), bool(check))
    kw = dict(n_steps=n_steps, step_size=step_size, noise_scale=noise_scale, ref_coef=ref_coef,
              lo=lo or 0.0, hi=hi or 0.0, has_lo=lo is not None, has_hi=hi is not None, clip_mode=clip_mode,
              clip_value=clip_value, every=every, rec_traj=rec_traj, rec_e=rec_e, check=check, seed=seed)
    return ref, kw


CHAINS = {
    "langevin": {},
    "clamp+value-clip+reference": dict(ref_coef=0.5, lo=-1.0, hi=1.5, clip_mode=1, clip_value=0.7),
    "noise-free+norm-clip": dict(noise_scale=0.0, hi=0.5, clip_mode=2, clip_value=0.4, every=1),
}


@pytest.mark.parametrize("name", list(CHAINS))
@pytest.mark.parametrize("device", [H100, STAGED], ids=["resident", "staged"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_chain_matches_step_by_step_reference(harness, tmp_path, name, device, dtype):
    ws, bs = _net(3, (32, 17, 32), scale=1.0)
    x0 = torch.randn(45, 3, dtype=torch.float64)  # B*D = 135: Philox groups straddle warps
    ref_args, kw = _chain(x0, ws, bs, **CHAINS[name])
    out = _run(harness, tmp_path, "chain", x0, ws, bs, 2, 0.07, dtype, device=device, **kw)
    assert out["rc"] == 0
    x, traj, ens, bad = mlp_langevin_chain_ref(*ref_args)
    _close(out["out"], x, f"{name} x", dtype)
    _close(out["traj"], traj, f"{name} trajectory", dtype)
    _close(out["ens"], ens, f"{name} energies", dtype)
    assert out["bad"] == 2**31 - 1 and int(bad) == -1


def test_chain_first_nonfinite_step(harness, tmp_path):
    ws, bs = _net(2, (16,), scale=1.0)
    x0 = torch.randn(20, 2, dtype=torch.float64)
    ref_args, kw = _chain(x0, ws, bs, act=1, n_steps=40, step_size=1.0, ref_coef=1e30, noise_scale=0.0, rec_traj=0,
                          rec_e=0)
    want = int(mlp_langevin_chain_ref(*ref_args)[3])
    assert want > 0
    assert _run(harness, tmp_path, "chain", x0, ws, bs, 1, 0.07, torch.float64, **kw)["bad"] == want


def test_network_too_big_for_shared_memory_is_an_error_code(harness, tmp_path):
    ws, bs = _net(128, (128, 128))
    x = torch.randn(3, 128, dtype=torch.float64)
    out = _run(harness, tmp_path, "eg", x, ws, bs, 2, 0.07, torch.float64, device=dict(smem_optin=100_000, sm_count=1),
               save=0)
    assert out["rc"] == -3  # kMLPErrSmem: the launcher turns it into "use backend='triton'"


@pytest.mark.parametrize("lane_order", [1, 2], ids=["lanes-ascending", "lanes-descending"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chain_several_rows_per_warp_under_serialized_lanes(harness, tmp_path, lane_order, dtype):
    """Several rows per warp (4 float32 / 2 float64, as a GPU with B >= 8 * 4 * SMs particles gets them)
    with D = 3, so a row's elements sit in other lanes than the ones that step them: the trajectory
    lane o % 32 records x[o] while lane m % 32 writes x[r * D + m]. The emulator runs each warp's lanes
    one at a time, barrier to barrier (lane_order): without the __syncwarp between the recording and
    the update in mlp_chain_kernel, the ascending order records rows that lanes 0..2 have already
    stepped, and the trajectory no longer matches the reference."""
    ws, bs = _net(3, (32, 17), scale=1.0)
    x0 = torch.randn(40, 3, dtype=torch.float64)  # 2 blocks of 8 warps, the last one partly filled
    ref_args, kw = _chain(x0, ws, bs, n_steps=4, every=1, **CHAINS["clamp+value-clip+reference"])
    out = _run(harness, tmp_path, "chain", x0, ws, bs, 2, 0.07, dtype, device=H100_FEW_SMS, lane_order=lane_order,
               **kw)
    assert out["rc"] == 0
    assert out["plan"]["rb"] == (2 if dtype == torch.float64 else 4) and out["plan"]["resident"]
    x, traj, ens, bad = mlp_langevin_chain_ref(*ref_args)
    _close(out["traj"], traj, f"lane order {lane_order} trajectory", dtype)
    _close(out["out"], x, f"lane order {lane_order} x", dtype)
    _close(out["ens"], ens, f"lane order {lane_order} energies", dtype)
    assert out["bad"] == 2**31 - 1 and int(bad) == -1


def test_plan_limit_counts_static_shared_memory(harness, tmp_path):
    """The launch plan checks dynamic + static shared memory against the device's per-block limit:
    a device with exactly the staged layout's dynamic bytes (no room for the static budget) is
    refused, one with the budget on top is not; a kernel whose real static shared memory exceeds the
    budget is refused at launch (-5, kMLPErrStatic) instead of overcommitting the block."""
    ws, bs = _net(4, (64, 64, 50))
    x = torch.randn(9, 4, dtype=torch.float64)
    sizes, budget = layout_bytes(harness, tmp_path / "layouts", 4, 3, 64, 8)
    staged = sizes[("fwd", 1, False, True)]
    tight = _run(harness, tmp_path, "eg", x, ws, bs, 2, 0.07, torch.float64,
                 device=dict(smem_optin=staged + budget - 1, sm_count=132), save=0)
    assert tight["rc"] == -3 and tight["plan"]["rc"] == -3
    fits = _run(harness, tmp_path, "eg", x, ws, bs, 2, 0.07, torch.float64,
                device=dict(smem_optin=staged + budget, sm_count=132), save=0)
    assert fits["rc"] == 0 and fits["plan"]["smem"] == staged and not fits["plan"]["resident"]
    e, g = mlp_energy_grad_ref(x, ws, bs, 2, 0.07)
    _close(fits["e"], e, "staged energy", torch.float64)
    too_much_static = _run(harness, tmp_path, "eg", x, ws, bs, 2, 0.07, torch.float64,
                           device=dict(smem_optin=232448, sm_count=132, static_smem=budget + 16), save=0)
    assert too_much_static["rc"] == -5


def _plan_op_available() -> bool:
    from ebmfast.ops import _cuda_plan

    return _cuda_plan._extension_reason() is None


@pytest.mark.skipif(not _plan_op_available(), reason="needs the compiled extension (ebmfast::mlp_cuda_plan)")
@pytest.mark.parametrize("kernel", ["forward", "chain"])
@pytest.mark.parametrize("case", [(3, (32, 17), 40, H100_FEW_SMS), (3, (32, 17), 40, H100), (19, (128, 40), 5000, H100),
                                  (4, (64, 64, 50), 45, dict(smem_optin=50_000, sm_count=1)),
                                  (128, (128, 128), 3, dict(smem_optin=100_000, sm_count=1))],
                         ids=lambda c: f"D{c[0]}-h{'x'.join(map(str, c[1]))}-B{c[2]}-sm{c[3]['sm_count']}")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_extension_reports_the_kernels_plan(harness, tmp_path, kernel, case, dtype):
    """What Python learns from ebmfast::mlp_cuda_plan is the plan the launch takes on the same device."""
    d, widths, b, device = case
    elem = 8 if dtype == torch.float64 else 4
    hp = next(h for h in (32, 64, 128) if max(widths) <= h)
    cfg = dict(mode="eg" if kernel == "forward" else "chain", dtype="f64" if elem == 8 else "f32", B=b, D=d,
               NH=len(widths), HP=hp, act=2, plan_only=1, **{f"w{i}": w for i, w in enumerate(widths)}, **device)
    (tmp_path / "config.txt").write_text("".join(f"{k} {v}\n" for k, v in cfg.items()))
    res = subprocess.run([str(harness), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    rc, rb, resident, smem, n_blocks = (int(v) for v in (tmp_path / "plan.txt").read_text().split())
    got = [int(v) for v in torch.ops.ebmfast.mlp_cuda_plan(d, list(widths), b, elem, kernel, device["smem_optin"],
                                                            device.get("smem_per_sm", 233472), device["sm_count"])]
    assert got[0] == rc
    if rc == 0:
        assert (got[1], got[2], bool(got[3]), got[5], got[8]) == (8 * rb, rb, bool(resident), smem, n_blocks)
        assert got[5] + got[6] <= device["smem_optin"]
    else:
        assert rc == -3 and got[7] > device["smem_optin"]
