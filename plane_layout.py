"""The tag plane's grid: a vector laid out on square cells, and read back.

Shared by tag_vectorizer.py, which builds the plane from tags, and net.py, whose film
design reads the values back: the network knows the layout, not the words.
"""
import math

import numpy as np


def grid_side(values):
    """The side of the smallest square grid that holds this many values."""
    return max(1, math.ceil(math.sqrt(values)))


def lay_out(vector, size):
    """Lays a vector out on a square grid and enlarges it (nearest) to a size x size plane."""
    vector = np.asarray(vector, np.float32)
    grid = grid_side(vector.size)
    if grid > size:
        raise ValueError('a {} px plane cannot hold a {}x{} grid of values'.format(size, grid, grid))
    cells = np.zeros(grid * grid, np.float32)
    cells[:vector.size] = vector
    cells = cells.reshape(grid, grid)
    index = np.arange(size) * grid // size
    return cells[index][:, index]


def cell_centres(size, values):
    """The rows (and columns) of a size x size plane where read_cells reads its grid's cells."""
    grid = grid_side(values)
    return (np.arange(grid) * 2 + 1) * size // (2 * grid)


def read_cells(planes, values, centres=None):
    """The inverse of lay_out() for a batch: (B, size, size) planes -> (B, values), read at
    the cell centres (NumPy or CuPy arrays). ``centres``: cell_centres(size, values) where
    the caller keeps them (on the device: a recorded step copies nothing from the host)."""
    grid = grid_side(values)
    if centres is None:
        centres = cell_centres(planes.shape[-1], values)
    cells = planes[:, centres][:, :, centres]
    return cells.reshape(len(planes), grid * grid)[:, :values]
