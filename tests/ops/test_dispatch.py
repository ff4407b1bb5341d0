"""The one backend walk: explicit requests raise with every reason, automatic ones fall back and
record what ran, op-specific checks narrow a backend, backward passes fall back to the reference."""
import pytest
import torch

from ebmfast import _ext
from ebmfast.ops import _dispatch

CPU = torch.device("cpu")


def test_auto_on_cpu_picks_the_cpu_kernel_or_the_reference_and_records_it():
    _dispatch.LAST_CHOICE.pop(("langevin_step", "cpu"), None)
    got = _dispatch.choose("langevin_step", CPU, torch.float32)
    assert got == ("cpu" if _ext.available() else "ref")
    assert _dispatch.LAST_CHOICE[("langevin_step", "cpu")] == got


def test_explicit_request_that_cannot_run_raises_naming_the_backend_and_reasons():
    with pytest.raises(RuntimeError, match=r"backend='cuda' cannot run here.*cuda kernels need CUDA tensors"):
        _dispatch.choose("langevin_step", CPU, torch.float32, "cuda")


def test_unknown_backend_is_a_value_error_listing_the_valid_names():
    with pytest.raises(ValueError, match=r"'gpu' is not a backend; expected one of \('auto', 'cuda'"):
        _dispatch.choose("langevin_step", CPU, torch.float32, "gpu")


def test_environment_override_is_an_explicit_request(monkeypatch):
    monkeypatch.setenv(_dispatch.ENV_VAR, "ref")
    assert _dispatch.choose("langevin_step", CPU, torch.float32) == "ref"
    monkeypatch.setenv(_dispatch.ENV_VAR, "cuda")
    with pytest.raises(RuntimeError, match="EBMFAST_BACKEND='cuda'"):
        _dispatch.choose("langevin_step", CPU, torch.float32)
    # an explicit backend= argument wins over the environment
    assert _dispatch.choose("langevin_step", CPU, torch.float32, "ref") == "ref"


def test_integer_dtypes_have_no_backend_and_the_error_lists_each_one():
    with pytest.raises(RuntimeError, match=r"no backend can run here.*cpu: .*dtype torch.int64.*ref: dtype"):
        _dispatch.choose("langevin_step", CPU, torch.int64)


@pytest.mark.skipif(not _ext.available(), reason="needs the compiled extension")
def test_a_registered_op_check_narrows_a_backend_and_auto_falls_back(monkeypatch):
    monkeypatch.setitem(_dispatch._CHECKS, ("langevin_step", "cpu"), lambda inputs: ["too big for the test"])
    assert _dispatch.choose("langevin_step", CPU, torch.float32) == "ref"
    with pytest.raises(RuntimeError, match="too big for the test"):
        _dispatch.choose("langevin_step", CPU, torch.float32, "cpu")
    # backward passes never raise: the forward already ran
    assert _dispatch.choose("langevin_step", CPU, torch.float32, "cpu", fallback_to_ref=True) == "ref"


def test_ops_without_a_triton_kernel_say_so():
    reasons = _dispatch.not_supported_reasons("triton", CPU, torch.float32, op="mlp_grad_norm_penalty")
    assert any("no triton kernel for mlp_grad_norm_penalty" in r for r in reasons)
