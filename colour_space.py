"""Colour science in one place: sRGB to CIELAB, the CIEDE2000 difference, layouts in cells.

The NumPy functions score pictures (evaluate.py); ``srgb_to_lab_variable`` is the same
conversion in Chainer functions, differentiable, for the colour loss (updater.py).
"""
import numpy as np

import compat  # noqa: F401  (Chainer shims; must precede chainer)
import chainer
import chainer.functions as F

# sRGB primaries to CIE XYZ (IEC 61966-2-1, D65). Its row sums are the D65 white, so
# every grey R = G = B gets a = b = 0.
SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
D65_WHITE = SRGB_TO_XYZ.sum(axis=1)


def srgb_to_lab(rgb):
    """sRGB on 0..255 (any shape (..., 3)) -> CIELAB (L*, a*, b*) under D65, float64."""
    c = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    t = (linear @ SRGB_TO_XYZ.T) / D65_WHITE
    delta = 6.0 / 29.0
    f = np.where(t > delta ** 3, np.cbrt(t), t / (3 * delta ** 2) + 4.0 / 29.0)
    return np.stack([116.0 * f[..., 1] - 16.0,
                     500.0 * (f[..., 0] - f[..., 1]),
                     200.0 * (f[..., 1] - f[..., 2])], axis=-1)


def ciede2000(lab1, lab2):
    """CIEDE2000 colour difference (kL = kC = kH = 1) of Lab arrays (..., 3), as in
    Sharma, Wu and Dalal (2005), including their notes on hue angles of neutral colours."""
    lab1, lab2 = np.asarray(lab1, np.float64), np.asarray(lab2, np.float64)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_mean7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(c_mean7 / (c_mean7 + 25.0 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    # A neutral colour has no hue: its angle is 0 (atan2 of -0.0 would say 180).
    h1p = np.where(c1p == 0, 0.0, np.degrees(np.arctan2(b1, a1p)) % 360)
    h2p = np.where(c2p == 0, 0.0, np.degrees(np.arctan2(b2, a2p)) % 360)
    neutral = c1p * c2p == 0

    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(neutral, 0.0, dh)
    d_lp, d_cp = L2 - L1, c2p - c1p
    d_hp = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2)

    l_mean, c_mean = (L1 + L2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_mean = np.where(np.abs(h1p - h2p) <= 180, h_sum / 2,
                      np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2))
    h_mean = np.where(neutral, h_sum, h_mean)
    t = (1 - 0.17 * np.cos(np.radians(h_mean - 30)) + 0.24 * np.cos(np.radians(2 * h_mean))
         + 0.32 * np.cos(np.radians(3 * h_mean + 6)) - 0.20 * np.cos(np.radians(4 * h_mean - 63)))
    d_theta = 30 * np.exp(-((h_mean - 275) / 25) ** 2)
    r_c = 2 * np.sqrt(c_mean ** 7 / (c_mean ** 7 + 25.0 ** 7))
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / np.sqrt(20 + (l_mean - 50) ** 2)
    s_c = 1 + 0.045 * c_mean
    s_h = 1 + 0.015 * c_mean * t
    r_t = -np.sin(np.radians(2 * d_theta)) * r_c
    return np.sqrt((d_lp / s_l) ** 2 + (d_cp / s_c) ** 2 + (d_hp / s_h) ** 2
                   + r_t * (d_cp / s_c) * (d_hp / s_h))


# Layouts: a picture in LAYOUT_CELLS x LAYOUT_CELLS cells (16 px at the demo's 128):
# coarse enough that the mean of poses that differ is still a figure. evaluate.py scores
# tags-alone canvases on them; dataset.py picks a tag set's prototype picture on them.
LAYOUT_CELLS = 8


def layout_cells(rgb, cells=LAYOUT_CELLS):
    """(cells, cells, 3): an image's pixels in CIELAB, averaged over each cell of a
    cells x cells grid (cell edges rounded to whole pixels where the side is not a multiple)."""
    lab = srgb_to_lab(np.asarray(rgb)[..., :3])
    edges = [np.linspace(0, side, cells + 1).round().astype(int) for side in lab.shape[:2]]
    sums = np.add.reduceat(np.add.reduceat(lab, edges[0][:-1], axis=0), edges[1][:-1], axis=1)
    return sums / np.multiply.outer(np.diff(edges[0]), np.diff(edges[1]))[..., None]


def layout_distance(cells, other):
    """Mean over the cells of the Euclidean (CIE76) distance between two layout_cells grids."""
    return float(np.linalg.norm(np.asarray(cells) - np.asarray(other), axis=-1).mean())


def chroma(lab):
    """CIELAB chroma C*ab = sqrt(a*² + b*²)."""
    lab = np.asarray(lab, np.float64)
    return np.hypot(lab[..., 1], lab[..., 2])


# sRGB's linear values to X/Xn, Y/Yn, Z/Zn (each row over the D65 white, as in srgb_to_lab).
LINEAR_TO_XYZ_OVER_WHITE = (SRGB_TO_XYZ / SRGB_TO_XYZ.sum(axis=1, keepdims=True)).astype(np.float32)


def srgb_to_lab_variable(c, linear_to_xyz=None):
    """(3, N) sRGB on 0..1 -> (3, N) CIELAB: srgb_to_lab's formulas in Chainer functions.
    ``linear_to_xyz(linear)``: the product of LINEAR_TO_XYZ_OVER_WHITE with the linear
    colours; by default F.matmul with the matrix copied from the host (a recorded step,
    which may not copy, passes its own: updater.recorded_linear_to_xyz)."""
    xp = chainer.backend.get_array_module(c)
    # Both sides of each F.where are computed: each is clipped to where its formula is
    # smooth, so that the side not taken cannot send NaN or inf back.
    decoded = ((F.maximum(c, xp.full(c.shape, 0.04045, c.dtype)) + 0.055) / 1.055) ** 2.4
    linear = F.where(chainer.as_array(c) <= 0.04045, c / 12.92, decoded)
    t = (linear_to_xyz(linear) if linear_to_xyz is not None
         else F.matmul(xp.asarray(LINEAR_TO_XYZ_OVER_WHITE), linear))
    delta = 6.0 / 29.0
    cube_root = F.maximum(t, xp.full(t.shape, delta ** 3, t.dtype)) ** (1.0 / 3)
    f = F.where(t.array > delta ** 3, cube_root, t / (3 * delta ** 2) + 4.0 / 29.0)
    return F.stack([116.0 * f[1] - 16.0, 500.0 * (f[0] - f[1]), 200.0 * (f[1] - f[2])])
