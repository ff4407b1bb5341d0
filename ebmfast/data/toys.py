"""2-D toy data sets used by the EBM / flow literature.

Each function has the signature ``f(n, seed=None, generator=None) -> Tensor``
and returns float32 [n, 2] on the CPU. All sets live roughly in [-4.5, 4.5]^2
so one network/step size works across them.

Scales chosen here (papers 000 and 003 do not state theirs):
- ring8:  8 modes on a circle of radius 2, std 0.2.
- grid9:  3x3 modes on {-2, 0, 2}^2, std 0.2 (the 9-grid of 000 Fig. 2 / 003 Fig. 1).
- grid25: 5x5 modes on {-4, -2, 0, 2, 4}^2, std 0.2 (PacGAN/VEEGAN grid layout).
  std 0.2 keeps the 3-std discs around neighbouring modes disjoint
  (3 * 0.2 = 0.6 < half the smallest spacing: 0.77 on the ring, 1.0 on grids),
  so "high-quality sample" counts are unambiguous.
- swissroll: sklearn make_swiss_roll(noise=0.5), coords (x, z) divided by 3.5
  -> about [-3.2, 4.1] (FFJORD divides by 5; this puts the set in about [-4, 4]).
- moons: sklearn make_moons(noise=0.05), centred at (0.5, 0.25) and scaled x2
  -> about [-3, 3] x [-1.6, 1.6]. make_moons spaces the arc positions evenly (not i.i.d.);
  ``moons(n, iid=True)`` draws the same law i.i.d. (use it for MMD noise floors).
- rings: sklearn make_circles(factor=0.5, noise=0.05) scaled x3 -> radii 3 and 1.5.
- checkerboard, pinwheel: the FFJORD recipes (range [-4, 4]).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from ._utils import check_n, make_generator, numpy_seed
from .gaussians import GaussianMixture

RING8_RADIUS = 2.0
GRID_SPACING = 2.0
TOY_MODE_STD = 0.2


def ring8_mixture(radius: float = RING8_RADIUS, std: float = TOY_MODE_STD) -> GaussianMixture:
    """8 equal-weight Gaussians at angles 2*pi*k/8 on a circle of ``radius``."""
    ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = radius * torch.stack([torch.cos(ang), torch.sin(ang)], dim=1)
    return GaussianMixture(means.float(), std=std)


def grid_mixture(k: int, spacing: float = GRID_SPACING, std: float = TOY_MODE_STD) -> GaussianMixture:
    """k x k equal-weight Gaussians on a grid centred at 0 with ``spacing``."""
    check_n(k, "k")
    ticks = (torch.arange(k, dtype=torch.float32) - (k - 1) / 2) * spacing
    gx, gy = torch.meshgrid(ticks, ticks, indexing="ij")
    return GaussianMixture(torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1), std=std)


MIXTURES = {
    "ring8": ring8_mixture,
    "grid9": lambda: grid_mixture(3),
    "grid25": lambda: grid_mixture(5),
}


def get_mixture(name: str) -> GaussianMixture:
    """The GaussianMixture behind a mixture toy ("ring8", "grid9", "grid25")."""
    key = str(name).lower()
    if key not in MIXTURES:
        raise ValueError(f"name must be one of {sorted(MIXTURES)}, got {name!r}")
    return MIXTURES[key]()


def ring8(n: int, seed: Optional[int] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """8 Gaussians on a ring (radius 2, std 0.2). [n, 2]."""
    return ring8_mixture().sample(n, seed=seed, generator=generator)


def grid9(n: int, seed: Optional[int] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """3x3 grid of Gaussians on {-2,0,2}^2 (std 0.2). [n, 2]."""
    return grid_mixture(3).sample(n, seed=seed, generator=generator)


def grid25(n: int, seed: Optional[int] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """5x5 grid of Gaussians on {-4,-2,0,2,4}^2 (std 0.2). [n, 2]."""
    return grid_mixture(5).sample(n, seed=seed, generator=generator)


def swissroll(n: int, seed: Optional[int] = None, generator: Optional[torch.Generator] = None,
              noise: float = 0.5) -> torch.Tensor:
    """sklearn swiss roll, coordinates (x, z) / 3.5. [n, 2]."""
    from sklearn.datasets import make_swiss_roll

    n = check_n(n)
    g = make_generator(seed, generator)
    x, _ = make_swiss_roll(n_samples=n, noise=noise, random_state=numpy_seed(g))
    return torch.from_numpy(x[:, [0, 2]] / 3.5).float()


def moons(n: int, seed: Optional[int] = None, generator: Optional[torch.Generator] = None,
          noise: float = 0.05, iid: bool = False) -> torch.Tensor:
    """Two moons, centred and scaled x2. [n, 2].

    iid=False (default): sklearn ``make_moons``, whose arc positions are an evenly spaced grid
    (n/2 per moon, then Gaussian noise): two such sets are closer to each other than i.i.d.
    draws of the law can be (their MMD^2_u is systematically negative), so they make a biased
    MMD noise floor (see ebmfast.evaluators.mmd). iid=True draws the same law i.i.d.:
    moon ~ Bernoulli(1/2), arc angle ~ U[0, pi], the same noise and transform.
    """
    n = check_n(n)
    if not isinstance(iid, bool):
        raise ValueError(f"iid must be a bool, got {iid!r}")
    g = make_generator(seed, generator)
    if iid:
        t = torch.rand(n, generator=g, dtype=torch.float64) * math.pi
        inner = torch.rand(n, generator=g, dtype=torch.float64) < 0.5
        x = torch.stack([torch.where(inner, 1.0 - torch.cos(t), torch.cos(t)),
                         torch.where(inner, 0.5 - torch.sin(t), torch.sin(t))], 1)
        x = x + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
        return ((x - torch.tensor([0.5, 0.25], dtype=torch.float64)) * 2.0).float()
    from sklearn.datasets import make_moons

    x, _ = make_moons(n_samples=n, noise=noise, random_state=numpy_seed(g))
    return torch.from_numpy((x - np.array([0.5, 0.25])) * 2.0).float()


def rings(n: int, seed: Optional[int] = None, generator: Optional[torch.Generator] = None,
          noise: float = 0.05) -> torch.Tensor:
    """Two concentric rings (sklearn make_circles, factor 0.5) scaled x3. [n, 2]."""
    from sklearn.datasets import make_circles

    n = check_n(n)
    g = make_generator(seed, generator)
    x, _ = make_circles(n_samples=n, factor=0.5, noise=noise, random_state=numpy_seed(g))
    return torch.from_numpy(x * 3.0).float()


def checkerboard(n: int, seed: Optional[int] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """8 squares of a 4x4 checkerboard on [-4, 4]^2 (FFJORD recipe). [n, 2]."""
    n = check_n(n)
    g = make_generator(seed, generator)
    x1 = torch.rand(n, generator=g) * 4 - 2
    x2_ = torch.rand(n, generator=g) - torch.randint(0, 2, (n,), generator=g).float() * 2
    x2 = x2_ + torch.floor(x1) % 2
    return (torch.stack([x1, x2], dim=1) * 2).float()


def pinwheel(n: int, seed: Optional[int] = None, generator: Optional[torch.Generator] = None,
             num_classes: int = 5, radial_std: float = 0.3, tangential_std: float = 0.1,
             rate: float = 0.25) -> torch.Tensor:
    """Pinwheel with ``num_classes`` arms (FFJORD recipe, scaled x2). [n, 2]."""
    n = check_n(n)
    check_n(num_classes, "num_classes")
    g = make_generator(seed, generator)
    rads = torch.linspace(0, 2 * math.pi, num_classes + 1)[:-1]
    labels = torch.randint(0, num_classes, (n,), generator=g)
    feats = torch.randn(n, 2, generator=g) * torch.tensor([radial_std, tangential_std])
    feats[:, 0] += 1.0
    angles = rads[labels] + rate * torch.exp(feats[:, 0])
    c, s = torch.cos(angles), torch.sin(angles)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # [n, 2, 2]
    return (2 * torch.einsum("ni,nij->nj", feats, rot)).float()
