"""Whether two runs trained the same models, array for array: a refactor's check.

    python benchmarks/compare_runs.py OLD/result NEW/result
    python benchmarks/compare_runs.py OLD/result/demo NEW/result/demo

Compares every model folder found in both (a folder holding model.json): enc.npz and
dec.npz, and of every snapshot_iter_N.npz both hold, the updater's state (weights,
optimizers, the iterator) and the weight average and random states kept beside it, each
array to the bit; and, where both hold a report/scores.json, the scores, less timings
and the folders' paths. Prints one line per file and exits 1 on any difference.
"""
import argparse
import json
import os
import sys

import numpy as np

# Snapshot entries that are the run's state, not its timings or log.
STATE = ('updater/', 'extensions/weight_average', 'extensions/random_states')
# scores.json entries that say when or where or how it was trained (the model.json copies
# in 'settings', whose paths differ and which a release may add to), not what was scored.
NOT_SCORES = ('seconds', 'scoring_seconds', 'data', 'settings')


def model_folders(root):
    """The folders under root (root included) that hold a model.json, relative to root."""
    return sorted(os.path.relpath(parent, root) for parent, _, files in os.walk(root)
                  if 'model.json' in files)


def differing_arrays(old, new, keep=lambda key: True):
    """The keys whose arrays differ (or that one file lacks), and how many were compared."""
    with np.load(old) as a, np.load(new) as b:
        keys = sorted(key for key in set(a.files) | set(b.files) if keep(key))
        return [key for key in keys if key not in a.files or key not in b.files
                or not np.array_equal(a[key], b[key])], len(keys)


def scores_of(path):
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in NOT_SCORES}
        return [strip(v) for v in value] if isinstance(value, list) else value
    with open(path, encoding='utf-8') as f:
        return strip(json.load(f))


def compare(old_root, new_root):
    """Prints the comparison; returns the number of differences."""
    differences = 0
    folders = [f for f in model_folders(old_root) if f in model_folders(new_root)]
    if not folders:
        print('no model folder (model.json) under both {} and {}'.format(old_root, new_root))
        return 1
    for folder in folders:
        old, new = os.path.join(old_root, folder), os.path.join(new_root, folder)
        snapshots = sorted(set(n for n in os.listdir(old) if n.startswith('snapshot_iter_'))
                           & set(os.listdir(new)))
        for name in ['enc.npz', 'dec.npz'] + snapshots:
            snapshot = name.startswith('snapshot_iter_')
            differ, count = differing_arrays(os.path.join(old, name), os.path.join(new, name),
                                             lambda key: not snapshot or key.startswith(STATE))
            differences += bool(differ)
            print('{} {}: {} arrays {}'.format(folder, name, count,
                                               'DIFFER: ' + ', '.join(differ[:5]) if differ else 'identical'))
    scores = [os.path.join(root, 'report', 'scores.json') for root in (old_root, new_root)]
    if all(os.path.exists(path) for path in scores):
        old_scores, new_scores = (scores_of(path) for path in scores)
        differ = sorted(key for key in set(old_scores) | set(new_scores)
                        if old_scores.get(key) != new_scores.get(key))
        differences += bool(differ)
        print('report/scores.json: ' + ('DIFFER: ' + ', '.join(differ) if differ else 'the same scores'))
    return differences


def main(argv=None):
    parser = argparse.ArgumentParser(description='Whether two runs trained the same models, array for array')
    parser.add_argument('old', help='a result folder, or one model folder')
    parser.add_argument('new', help='the same of the other run')
    args = parser.parse_args(argv)
    differences = compare(args.old, args.new)
    print('identical' if not differences else '{} file(s) differ'.format(differences))
    return 1 if differences else 0


if __name__ == '__main__':
    sys.exit(main())
