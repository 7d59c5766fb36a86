"""The training previews, as the example's facade_visualizer.py: every snapshot interval,
a sheet of fixed test images, drawing | tag plane | output | truth (stage 2: drawing |
coarse input | output | truth), in OUT/preview/iter_N.png.
"""
import os

import numpy as np
from PIL import Image

import compat  # noqa: F401  (Chainer shims; must precede chainer)
from chainer import training

import dataset
import flatting
import sheets
import tag_vectorizer

def preview_extension(model, preview_set, out, count=4, weights_of=None):
    """Every trigger: a sheet of drawing | tag plane | output | truth for fixed test images,
    each row labelled with the image's first tags. ``weights_of``: the (encoder, decoder)
    whose weights model's networks take first (--bn-across-ranks trains copies whose batch
    norms need every rank, and the preview runs on rank 0 alone)."""
    indices = list(range(min(count, len(preview_set))))

    @training.make_extension()
    def preview(trainer):
        if weights_of is not None:
            model.enc.copyparams(weights_of[0])
            model.dec.copyparams(weights_of[1])
        rows, row_labels = [], []
        for i in indices:
            tags = preview_set.tags[i]
            drawing = preview_set.drawing_of(i)
            truth = dataset.load_image(preview_set.paths[i])
            if model.stage == 2:
                rows.append(refinement_preview_row(model, preview_set, drawing, truth, tags))
            else:
                plane = tag_vectorizer.tag_plane(model.vectorizer, tags, model.size)
                plane_image = Image.fromarray(np.uint8((plane + 1) * 127.5), 'L')
                rows.append([drawing, plane_image, model.colour(drawing, tags), truth])
            row_labels.append(','.join(tags[:3]) or '(no tag)')
        columns = ['drawing', 'coarse input' if model.stage == 2 else 'tag plane', 'output', 'truth']
        grid = sheets.grid(rows, columns, row_labels, cell=model.size)
        os.makedirs(os.path.join(out, 'preview'), exist_ok=True)
        grid.save(os.path.join(out, 'preview', 'iter_{}.png'.format(trainer.updater.iteration)))

    return preview


def refinement_preview_row(model, preview_set, drawing, truth, tags):
    """Stage 2's preview of one test image: drawing | coarse input (the truth degraded, as in
    training, without the random jitter; a shading model's: the truth's flat colours) |
    output | truth."""
    square = (model.size, model.size)
    if model.shading:
        drawing, truth = dataset.resized(drawing, square), dataset.resized(truth, square)
        flat = flatting.flat_colours(truth, drawing)
        return [drawing, flat, model.shade(drawing, flat, tags), truth]
    coarse = dataset.coarse_colouring(dataset.resized(truth, square), preview_set.factor)
    return [drawing, coarse, model.refine(dataset.resized(drawing, square), coarse, tags, model.size), truth]
