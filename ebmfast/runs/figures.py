"""The figures of a run (written by Runner every ``fig_every`` iterations and at the end).

    figures/samples.png        data vs samples (2-D scatter or principal-component view)
    figures/energy.png         energy landscape contours + particles, and exp(-E)   (D = 2, learned energy)
    figures/vector_field.png   quiver plot of -grad E                                (D = 2, learned energy)
    figures/curves.png         training curves from metrics.jsonl
    figures/layers.png         per-layer weight spectral norms and gradient norms from layers.jsonl
    figures/image_grid.png     image samples                                        (--image-shape)
    figures/chains.png         fresh sampling chains as strips                      (--image-shape)
    figures/progress/samples_itNNNNNNN.png   snapshots of samples.png at each periodic write
"""
from __future__ import annotations

from typing import Optional

import torch

from .io import read_jsonl

__all__ = ["write_run_figures", "data_energy"]


def data_energy(trainer, scale: float):
    """The learned energy as a function of data coordinates: x -> E(scale * x), or None."""
    e = trainer.energy_fn()
    if e is None:
        return None
    if scale == 1.0:
        return e
    return lambda x: e(x * scale)


def write_run_figures(runner, final: bool) -> list:
    """Write every figure that applies to ``runner``'s run; returns the paths written."""
    from .. import plotting as P
    tr, spec, paths = runner.trainer, runner.spec, runner.paths
    fig_dir = paths.figures
    fig_dir.mkdir(parents=True, exist_ok=True)
    n_it = tr.iteration
    title = f"{tr.name} on {spec.data or spec.target}, iteration {n_it}"
    out = []
    data = runner.data.train if runner.data is not None else None
    samples: Optional[torch.Tensor] = None
    try:
        samples = runner.draw_samples(min(spec.n_samples, 3000), seed=spec.seed + 3)
    except (ValueError, RuntimeError):
        samples = None
    if samples is not None:
        ref = data if data is not None else samples
        out.append(P.data_vs_samples(ref, samples, fig_dir / "samples.png", title))
        if not final:
            out.append(P.data_vs_samples(ref, samples, fig_dir / "progress" / f"samples_it{n_it:07d}.png", title))
    energy = data_energy(tr, spec.data_scale)
    dim = runner.dim
    if energy is not None and dim == 2:
        ref = data if data is not None else samples
        pts = [ref.numpy()] if ref is not None else []
        from ..plotting.scatter import plot_limits
        xl, yl = plot_limits(*pts) if pts else ((-4, 4), (-4, 4))
        out.append(P.energy_contours(energy, samples, fig_dir / "energy.png", xl, yl, title=title,
                                     data=data[:2000] if data is not None else None, dtype=tr.dtype,
                                     device=tr.device))
        out.append(P.vector_field(energy, fig_dir / "vector_field.png", xl, yl, particles=samples,
                                  title=f"-grad E, {title}", dtype=tr.dtype, device=tr.device))
    recs = [r for r in read_jsonl(paths.metrics) if isinstance(r.get("it"), int)]
    if recs:
        out.append(P.training_curves(recs, fig_dir / "curves.png", title=f"{tr.name}: training curves"))
    lrecs = read_jsonl(paths.layers)
    if lrecs:
        out.append(P.layer_norms(lrecs, fig_dir / "layers.png", title=f"{tr.name}: per-layer norms"))
    if spec.image_shape is not None and samples is not None:
        out.append(P.image_grid(samples[:64], spec.image_shape, fig_dir / "image_grid.png", title=title))
        if tr.has_chain:
            k = tr.figure_chain_steps()
            try:
                frames = tr.chain_trajectory(6, k, n_frames=8) / spec.data_scale
                marks = sorted({round(i * k / (frames.shape[0] - 1)) for i in range(frames.shape[0])})
                out.append(P.chain_strip(frames.reshape(frames.shape[0], frames.shape[1], -1), spec.image_shape,
                                         fig_dir / "chains.png", steps=marks,
                                         title=f"{tr.name}: fresh chains ({k} steps)"))
            except (ValueError, RuntimeError):
                pass
    return out
