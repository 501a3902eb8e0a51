"""A small synthetic image dataset of ten filled shapes, generated in memory from a seed.

Why it looks like this: the default dataset must let BYOL show learning within minutes on a CPU, so it
has to be neither trivial nor hopeless for raw pixels. Prototyping showed that

- the class must live in the *silhouette* only: shape and background colours are drawn independently
  of the label (the shape colour only kept far from the background so the silhouette is visible), so
  no colour statistic gives the class away;
- a flat background made standardised raw pixels too strong (~40% kNN), so the background is a random
  two-colour linear gradient;
- shapes nearly filling the image barely move, which makes standardised raw pixels a strong template
  matcher, so the radius is 0.25-0.40 of the side (see ``_RADIUS``);
- heavier clutter and noise (sigma 12) made it too hard to learn in minutes, so there are only 0-2 small
  clutter items (blobs and short lines, drawn behind the shape so it is never occluded) and noise
  sigma 6;
- drawing at twice the resolution and average-pooling gives anti-aliased edges, so a shape is not a
  jagged set of pixels whose aliasing pattern depends on the pose.

Everything is rendered with torch on coordinate grids, a chunk of images at a time, from one seeded
:class:`torch.Generator` (the global RNG is untouched).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SHAPE_NAMES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "plus",
    "ring",
    "crescent",
    "arrow",
    "t_shape",
    "bowtie",
)

_SUPERSAMPLE = 2  # draw at 2x, then average-pool
_CHUNK = 512  # images rendered at once (bounds memory to a few tens of MB)
_MIN_COLOUR_DIST = 100.0  # L2 distance (0-255 RGB) of the shape colour from both background colours
_COLOUR_CANDIDATES = 16
_MAX_CLUTTER = 2
_NOISE_SIGMA = 6.0
# Shape radius as a fraction of the side. At 0.28-0.45 a shape nearly fills the image and barely moves,
# so per-image-standardised raw pixels reached 33% kNN (BYOL 29% after 10 epochs); at 0.25-0.40 they
# fall to 23% while BYOL keeps 25%: the objective then measures learned invariances, not templates.
_RADIUS = (0.25, 0.40)


def _polygon(u: torch.Tensor, v: torch.Tensor, n: int, r_in: float) -> torch.Tensor:
    """Regular star with n outer vertices at radius 1 and inner vertices at r_in (convex polygon when
    r_in = cos(pi / n)); the first outer vertex points to +v. Boolean mask of u's shape."""
    sector = 2 * math.pi / n
    ang = torch.atan2(u, v).remainder(sector) - sector / 2  # (...) angle from mid-sector
    ang = ang.abs()  # fold to [0, sector / 2]: 0 at an inner vertex, sector / 2 at an outer one
    rho = torch.sqrt(u * u + v * v)
    px, py = rho * torch.cos(ang), rho * torch.sin(ang)  # point in the folded sector frame
    ox, oy = math.cos(sector / 2), math.sin(sector / 2)  # outer vertex
    ix, iy = r_in, 0.0  # inner vertex (mid-sector)
    # inside if on the origin's side of the edge from the inner to the outer vertex
    cross = (ox - ix) * (py - iy) - (oy - iy) * (px - ix)
    return cross >= 0


def _silhouette(k: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Boolean silhouette (N, H, W) of class k in local unit coordinates u, v (N, H, W); every shape
    spans roughly [-1, 1] so that size is not a class cue."""
    name, au, av = SHAPE_NAMES[k], u.abs(), v.abs()
    if name == "circle":
        return u * u + v * v <= 1.0
    if name == "square":
        return torch.maximum(au, av) <= 0.8
    if name == "triangle":
        return _polygon(u / 1.15, (v + 0.3) / 1.15, 3, 0.5)  # bounding box centred
    if name == "star":
        return _polygon(u, v, 5, 0.42)
    if name == "plus":
        return ((au <= 0.3) & (av <= 0.9)) | ((av <= 0.3) & (au <= 0.9))
    if name == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.55**2)
    if name == "crescent":
        return (u * u + v * v <= 1.0) & ((u - 0.45) ** 2 + v * v > 0.8**2)
    if name == "arrow":
        shaft = (av <= 0.22) & (u >= -0.9) & (u <= 0.1)
        return shaft | ((u >= 0.05) & (av <= 0.8 * (0.9 - u)))
    if name == "t_shape":
        return ((au <= 0.85) & (v >= 0.45) & (v <= 0.9)) | ((au <= 0.25) & (av <= 0.9))
    return (av <= 0.85 * au) & (au <= 0.9)  # bowtie


def _local_coords(
    grid: torch.Tensor,
    cx: torch.Tensor,
    cy: torch.Tensor,
    theta: torch.Tensor,
    radius: torch.Tensor,
    aspect: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Map the pixel grid (2, H, W) in [-1, 1] to each shape's rotated, scaled frame: (N, H, W) twice.
    Pose parameters are (N,); radius is in grid units (the side is 2)."""
    cx, cy, theta = cx[:, None, None], cy[:, None, None], theta[:, None, None]  # (N, 1, 1)
    radius, aspect = radius[:, None, None], aspect[:, None, None]  # (N, 1, 1)
    dx, dy = grid[0] - cx, grid[1] - cy  # (N, H, W)
    c, s = torch.cos(theta), torch.sin(theta)  # (N, 1, 1)
    sx, sy = radius * aspect.sqrt(), radius / aspect.sqrt()  # (N, 1, 1)
    return (c * dx + s * dy) / sx, (c * dy - s * dx) / sy


def _grid(size: int) -> torch.Tensor:
    """Pixel-centre coordinates (2, size, size) in [-1, 1]; channel 0 is x (columns), 1 is y (rows)."""
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1  # (S,)
    yy, xx = torch.meshgrid(t, t, indexing="ij")  # (S, S)
    return torch.stack([xx, yy])


def _draw_params(n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """All random choices for n images, each (N, ...), drawn up front so chunking cannot change them."""

    def unif(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=g)

    p: dict[str, torch.Tensor] = {}
    # pose: radius 0.25-0.40 of the side (the grid side is 2), centre keeps the shape nearly inside
    p["radius"] = 2 * unif(_RADIUS[0], _RADIUS[1], n)
    p["aspect"], p["theta"] = unif(0.85, 1.15, n), unif(0, 2 * math.pi, n)
    reach = (1 - p["radius"]).clamp(min=0.05)  # (N,)
    p["cx"], p["cy"] = reach * unif(-1, 1, n), reach * unif(-1, 1, n)
    # background: linear gradient between two random colours along a random direction
    p["bg0"], p["bg1"], p["bg_dir"] = unif(0, 255, n, 3), unif(0, 255, n, 3), unif(0, 2 * math.pi, n)
    # shape colour: the first candidate far from both background colours, else the farthest
    cand = unif(0, 255, n, _COLOUR_CANDIDATES, 3)  # (N, K, 3)
    dist = torch.minimum(
        (cand - p["bg0"][:, None]).norm(dim=2), (cand - p["bg1"][:, None]).norm(dim=2)
    )  # (N, K)
    far = dist >= _MIN_COLOUR_DIST  # (N, K)
    pick = torch.where(far.any(1), far.float().argmax(1), dist.argmax(1))  # (N,)
    p["fg"] = cand[torch.arange(n), pick]  # (N, 3)
    # clutter: 0-2 items per image (slot j is used if j < n_clutter), each a blob or a short line
    p["n_clutter"] = torch.randint(0, _MAX_CLUTTER + 1, (n,), generator=g)
    p["cl_line"] = torch.rand(n, _MAX_CLUTTER, generator=g) < 0.5
    p["cl_x"], p["cl_y"] = unif(-0.9, 0.9, n, _MAX_CLUTTER), unif(-0.9, 0.9, n, _MAX_CLUTTER)
    p["cl_ang"] = unif(0, math.pi, n, _MAX_CLUTTER)
    p["cl_len"] = unif(0.1, 0.18, n, _MAX_CLUTTER)  # line half-length, grid units
    p["cl_width"] = unif(0.03, 0.05, n, _MAX_CLUTTER)  # line half-width
    p["cl_r"] = unif(0.08, 0.16, n, _MAX_CLUTTER)  # blob radius
    p["cl_col"] = unif(0, 255, n, _MAX_CLUTTER, 3)
    return p


def _area(mask: torch.Tensor) -> torch.Tensor:
    """Fraction of each output pixel covered by a 2x-resolution mask: (N, 2S, 2S) -> (N, 1, S, S)."""
    return F.avg_pool2d(mask[:, None].float(), _SUPERSAMPLE)


def _render(k: int, p: dict[str, torch.Tensor], size: int, g: torch.Generator) -> torch.Tensor:
    """Render images of class k from their parameters p (each (C, ...)): uint8 (C, 3, S, S).

    Masks are drawn at 2x and reduced to per-pixel coverage; colours are mixed at the final size.
    The background needs no supersampling: the area mean of a linear gradient is its centre value.
    """
    grid = _grid(size * _SUPERSAMPLE)  # (2, B, B)
    small = _grid(size)  # (2, S, S)
    d = p["bg_dir"][:, None, None]  # (C, 1, 1)
    t = (torch.cos(d) * small[0] + torch.sin(d) * small[1]) / (2 * math.sqrt(2)) + 0.5  # (C, S, S)
    bg = p["bg0"][:, :, None, None] + (p["bg1"] - p["bg0"])[:, :, None, None] * t[:, None]
    u, v = _local_coords(grid, p["cx"], p["cy"], p["theta"], p["radius"], p["aspect"])  # (C, B, B)
    covered = _silhouette(k, u, v)  # (C, B, B); layers are painted top (the shape) first
    out = p["fg"][:, :, None, None] * _area(covered)  # (C, 3, S, S)
    for j in range(_MAX_CLUTTER):
        idx = (p["n_clutter"] > j).nonzero().squeeze(1)  # (A,)
        if idx.numel() == 0:
            continue
        one = torch.ones(idx.numel())
        cl = {key: p[key][idx, j, None, None] for key in ("cl_line", "cl_len", "cl_width", "cl_r")}
        u, v = _local_coords(grid, p["cl_x"][idx, j], p["cl_y"][idx, j], p["cl_ang"][idx, j], one, one)
        line = (u.abs() <= cl["cl_len"]) & (v.abs() <= cl["cl_width"])  # (A, B, B)
        blob = u * u + v * v <= cl["cl_r"] ** 2  # (A, B, B)
        m = torch.where(cl["cl_line"], line, blob) & ~covered[idx]  # (A, B, B)
        covered[idx] |= m
        out[idx] += p["cl_col"][idx, j, :, None, None] * _area(m)
    out += bg * (1 - _area(covered))
    out += _NOISE_SIGMA * torch.randn(out.shape, generator=g)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def make_shapes(num_images: int, seed: int, image_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images uint8 (N, 3, image_size, image_size), labels int64 (N,)), deterministic from seed.

    Labels are balanced (each class count within 1 of N / 10) and shuffled; the class is the
    silhouette (see :data:`SHAPE_NAMES`), never the colour.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(num_images, generator=g)  # (N,)
    labels = (torch.arange(num_images) % len(SHAPE_NAMES))[perm]  # (N,)
    params = _draw_params(num_images, g)
    images = torch.empty(num_images, 3, image_size, image_size, dtype=torch.uint8)
    for k in range(len(SHAPE_NAMES)):  # one class at a time: its silhouette code runs once per chunk
        for idx in (labels == k).nonzero().squeeze(1).split(_CHUNK):
            images[idx] = _render(k, {key: t[idx] for key, t in params.items()}, image_size, g)
    return images, labels
