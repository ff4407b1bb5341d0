"""Validated hyper-parameter dataclasses: every trainer's ``Config`` and the run options derive from
:class:`TrainerConfig`.

Fields declared with :func:`param` carry their allowed range, so ``validate()`` is one generic
loop and every error names the key, the range and the value::

    @dataclass
    class OTEBMConfig(TrainerConfig):
        tau: float = param(20.0, ge=0.0, doc="penalty weight")
    OTEBMConfig(tau=-1).validate()
    # ValueError: OTEBMConfig.tau (penalty weight) must be >= 0.0 (allowed range [0.0, inf)), got -1
    OTEBMConfig.from_dict({"tua": 3})
    # ValueError: OTEBMConfig: unknown key 'tua'; valid keys: tau, ...
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ["TrainerConfig", "param", "range_text", "FCEnergyConfig"]


def param(
    default: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    choices: Sequence[Any] | None = None,
    optional: bool = False,
    kind: type | None = None,
    doc: str = "",
) -> Any:
    """Declare a validated config field.

    Args:
        default: default value. Lists are stored as tuples (dataclass defaults
            must be immutable).
        gt, ge, lt, le: numeric bounds (strict / inclusive). For tuple fields
            the bounds apply to every element.
        choices: allowed values (strings, usually).
        optional: ``None`` is an allowed value.
        kind: expected python type (``float``, ``int``, ``bool``, ``str``,
            ``tuple``); inferred from ``default`` when omitted.
        doc: one line shown in error messages and ``describe()``.
    """
    if isinstance(default, list):
        default = tuple(default)
    if kind is None and default is not None:
        kind = type(default)
    meta = dict(gt=gt, ge=ge, lt=lt, le=le, choices=tuple(choices) if choices is not None else None,
                optional=optional or default is None, kind=kind, doc=doc)
    return dataclasses.field(default=default, metadata={"ebmfast": meta})


def range_text(m: dict) -> str:
    """The allowed interval of a field's metadata, e.g. ``[0.0, inf)``."""
    lo = m["gt"] if m["gt"] is not None else m["ge"]
    hi = m["lt"] if m["lt"] is not None else m["le"]
    left = "(" if m["gt"] is not None or lo is None else "["
    right = ")" if m["lt"] is not None or hi is None else "]"
    return f"{left}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}{right}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass
class TrainerConfig:
    """Base of every trainer's hyper-parameter dataclass (no fields of its own)."""

    # ------------------------------------------------------------------ checks
    def _check_scalar(self, key: str, v: Any, m: dict) -> None:
        cls = type(self).__name__
        if m["choices"] is not None:
            if v not in m["choices"]:
                raise ValueError(f"{cls}.{key} must be one of {list(m['choices'])}, got {v!r}")
            return
        kind = m["kind"]
        if kind is bool:
            if not isinstance(v, bool):
                raise TypeError(f"{cls}.{key} must be a bool, got {type(v).__name__} {v!r}")
            return
        if kind is int and not (isinstance(v, int) and not isinstance(v, bool)):
            raise TypeError(f"{cls}.{key} must be an int, got {type(v).__name__} {v!r}")
        if kind is float and not _is_number(v):
            raise TypeError(f"{cls}.{key} must be a number, got {type(v).__name__} {v!r}")
        if kind is str and not isinstance(v, str):
            raise TypeError(f"{cls}.{key} must be a str, got {type(v).__name__} {v!r}")
        if _is_number(v):
            if isinstance(v, float) and math.isnan(v):
                raise ValueError(f"{cls}.{key} must be a number in {range_text(m)}, got nan")
            bad = ((m["gt"] is not None and not v > m["gt"]) or (m["ge"] is not None and not v >= m["ge"])
                   or (m["lt"] is not None and not v < m["lt"]) or (m["le"] is not None and not v <= m["le"]))
            if bad:
                op = (f"> {m['gt']}" if m["gt"] is not None and not v > m["gt"] else
                      f">= {m['ge']}" if m["ge"] is not None and not v >= m["ge"] else
                      f"< {m['lt']}" if m["lt"] is not None and not v < m["lt"] else f"<= {m['le']}")
                doc = f" ({m['doc']})" if m["doc"] else ""
                raise ValueError(f"{cls}.{key}{doc} must be {op} (allowed range {range_text(m)}), got {v!r}")

    def validate(self) -> "TrainerConfig":
        """Check every field against its declared type/range; returns self.

        Raises:
            TypeError / ValueError naming ``<Config>.<key>``, the allowed range
            or choices, and the offending value.
        """
        for f in dataclasses.fields(self):
            m = f.metadata.get("ebmfast")
            if m is None:
                continue
            v = getattr(self, f.name)
            if v is None:
                if not m["optional"]:
                    raise ValueError(f"{type(self).__name__}.{f.name} must not be None")
                continue
            if m["kind"] is tuple or isinstance(v, (tuple, list)):
                if not isinstance(v, (tuple, list)):
                    raise TypeError(f"{type(self).__name__}.{f.name} must be a tuple, got "
                                    f"{type(v).__name__} {v!r}")
                if isinstance(v, list):
                    object.__setattr__(self, f.name, tuple(v))
                sub = dict(m, kind=None, choices=None)
                for i, e in enumerate(v):
                    if not _is_number(e) and not isinstance(e, str):
                        raise TypeError(f"{type(self).__name__}.{f.name}[{i}] must be a number, got {e!r}")
                    self._check_scalar(f"{f.name}[{i}]", e, sub)
                continue
            self._check_scalar(f.name, v, m)
        return self

    # ------------------------------------------------------------ conversion
    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "TrainerConfig":
        """Build and validate a config from a mapping; unknown keys are rejected."""
        if d is None:
            d = {}
        if not isinstance(d, Mapping):
            raise TypeError(f"{cls.__name__}.from_dict expects a mapping, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown key{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(repr(k) for k in unknown)}; valid keys: {', '.join(names)}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**kw).validate()

    def to_dict(self) -> dict:
        """Plain-python dict of the fields (tuples kept), suitable for json/torch.save."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def describe(cls) -> str:
        """One line per key: name, default, allowed range/choices, doc."""
        lines = []
        for f in dataclasses.fields(cls):
            m = f.metadata.get("ebmfast", {})
            rng = (f"one of {list(m['choices'])}" if m.get("choices") else
                   range_text(m) if m and any(m[k] is not None for k in ("gt", "ge", "lt", "le")) else "")
            lines.append(f"{f.name} = {f.default!r}  {rng}  {m.get('doc', '')}".rstrip())
        return "\n".join(lines)


@dataclass
class FCEnergyConfig(TrainerConfig):
    """Fields of the default fully connected energy (``ebmfast.energies.toy.ToyEnergy``), shared by
    every trainer that builds it unless an ``energy=`` module is passed (MLE, OT-EBM, w-GCN)."""

    hidden: int = param(128, ge=1, doc="width of the default FC energy")
    n_layers: int = param(5, ge=2, doc="Linear layers of the default FC energy (000: 5)")
    activation: str = param("leaky_relu", doc="activation of the default FC energy")
