"""Trains pix2pix with a tag plane (the post's experiment) on a folder of tagged images.

    python train_facade_text.py -g 0 -e 300 -b 1 -i data/default
    python train_facade_text.py --demo            # small model, 128 px, minutes on a CPU

The flags are Chainer's examples/pix2pix/train_facade.py's plus --lr (default 1e-5,
the post's), --no-tag (the conventional pix2pix of the post's Fig. 5), --width,
--size and a --demo preset. The output folder holds the model colorize.py reads
(model.json, enc.npz, dec.npz, tag_vectors.txt), trainer snapshots to resume from
(-r), the log, loss curves (loss.png) and preview sheets (preview/iter_N.png:
drawing | tags | output | truth). Ctrl-C saves a snapshot first.
"""
import argparse
import glob
import json
import os
import random
import sys

import numpy as np
from PIL import Image

import compat
import chainer
from chainer import training
from chainer.training import extensions

import colorize
import dataset
from net import Decoder, Discriminator, Encoder
import tag_vectorizer
from updater import TextPix2pixUpdater

# The CPU demo: a narrow network at 128 px, one core, minutes. Its learning rate is 30
# times the post's: measured on the default data, the twins' tags (響/暁) still made no
# difference after 15,000 updates at the example's 2e-4; at 4e-4 they began to after
# about 9,000 and at 6e-4 after about 5,000 (README, "Results").
DEMO = dict(width=16, size=128, lr=6e-4, iteration=5000, snapshot_interval=1000,
            display_interval=50, dataset='data/default', out='result/demo')


def parse_args(argv):
    parser = argparse.ArgumentParser(description='pix2pix with text (Chainer)')
    parser.add_argument('--batchsize', '-b', type=int, default=1, help='Number of images in each mini-batch')
    parser.add_argument('--epoch', '-e', type=int, default=300, help='Number of sweeps over the dataset to train')
    parser.add_argument('--iteration', type=int, default=None, help='Stop after this many updates instead')
    parser.add_argument('--gpu', '-g', type=int, default=-1, help='GPU ID (negative value indicates CPU)')
    parser.add_argument('--dataset', '-i', default='data/default',
                        help='Folder of tagged images (or with train/ and test/ inside)')
    parser.add_argument('--out', '-o', default='result', help='Directory to output the result')
    parser.add_argument('--resume', '-r', default='',
                        help='Resume from this trainer snapshot ("latest": the newest in --out)')
    parser.add_argument('--seed', type=int, default=0, help='Random seed')
    parser.add_argument('--snapshot_interval', type=int, default=1000, help='Interval of snapshot')
    parser.add_argument('--display_interval', type=int, default=100, help='Interval of displaying log to console')
    parser.add_argument('--lr', type=float, default=1e-5, help='Adam learning rate (the post: 1e-5)')
    parser.add_argument('--no-tag', action='store_true', help='Zero tag plane: conventional pix2pix')
    parser.add_argument('--width', type=int, default=64, help='Base channels of the networks (the example: 64)')
    parser.add_argument('--size', type=int, default=256, help='Training crop side in pixels (a multiple of 128)')
    parser.add_argument('--drawing', choices=dataset.DRAWINGS, default='line',
                        help='Input drawing made from the colour image when no line/ folder is paired')
    parser.add_argument('--flip', action='store_true', help='Random horizontal flips')
    parser.add_argument('--adv-weight', type=float, default=1.0,
                        help='Weight of the adversarial term in the generator loss (the example: 1; 0: L1 only)')
    parser.add_argument('--tag-dropout', type=float, default=0.0,
                        help='Leave each tag of a training image out with this probability')
    parser.add_argument('--vectors', default=None, help='Pretrained word vectors (word2vec text/binary format)')
    parser.add_argument('--tag-encoding', choices=('word2vec', 'onehot'), default='word2vec',
                        help='Tag vectors: word2vec trained on the tag lists (the post), or one-hot')
    parser.add_argument('--tag-dim', type=int, default=tag_vectorizer.DEFAULT_DIM,
                        help='Size of the word2vec vectors trained on the tags')
    parser.add_argument('--loaderjob', '-j', type=int, default=0,
                        help='Processes loading images (0: in the training process, exactly reproducible)')
    parser.add_argument('--demo', action='store_true', help='CPU demo preset: ' + ', '.join(
        '{}={}'.format(k, v) for k, v in DEMO.items()))
    if '--demo' in (argv if argv is not None else sys.argv[1:]):
        parser.set_defaults(**DEMO)
    args = parser.parse_args(argv)
    if args.size <= 0 or args.size % 128:
        parser.error('--size must be a positive multiple of 128 (the encoder halves it 7 times)')
    return args


def split_folders(root):
    """(train, test) folders: ROOT/train and ROOT/test when present, else (ROOT, None)."""
    train, test = os.path.join(root, 'train'), os.path.join(root, 'test')
    if os.path.isdir(train):
        return train, (test if os.path.isdir(test) else None)
    return root, None


def make_optimizer(model, alpha, beta1=0.5):
    optimizer = chainer.optimizers.Adam(alpha=alpha, beta1=beta1)
    optimizer.setup(model)
    optimizer.add_hook(chainer.optimizer.WeightDecay(0.00001), 'hook_dec')
    return optimizer


def save_model(out, enc, dec):
    """Writes enc.npz and dec.npz for colorize.py (replaced whole, never half-written)."""
    for name, link in (('enc.npz', enc), ('dec.npz', dec)):
        path = os.path.join(out, name)
        chainer.serializers.save_npz(path + '.tmp.npz', link)
        os.replace(path + '.tmp.npz', path)


def latest_snapshot(out):
    snapshots = glob.glob(os.path.join(out, 'snapshot_iter_*.npz'))
    if not snapshots:
        return None
    return max(snapshots, key=lambda p: int(p.rsplit('_', 1)[1].split('.')[0]))


class RandomStates(training.Extension):
    """Keeps NumPy's (dropout) and Python's (crops, flips, tag dropout) random states in
    the trainer snapshot, so that a resumed run continues exactly as an unbroken one."""
    trigger = (1, 'iteration')

    def __call__(self, trainer):
        pass

    def serialize(self, serializer):
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        keys = serializer('numpy_keys', keys)
        numbers = serializer('numpy_numbers', np.array([pos, has_gauss, gauss], np.float64))
        version, python_keys, python_gauss = random.getstate()
        python_keys = serializer('python_keys', np.array(python_keys, np.uint64))
        if isinstance(serializer, chainer.serializer.Deserializer):
            pos, has_gauss, gauss = numbers
            np.random.set_state((kind, keys, int(pos), int(has_gauss), float(gauss)))
            random.setstate((version, tuple(int(k) for k in python_keys), python_gauss))


def preview_extension(model, preview_set, out, count=4):
    """Every trigger: a sheet of drawing | tags | output | truth for fixed test images."""
    indices = list(range(min(count, len(preview_set))))

    @training.make_extension()
    def preview(trainer):
        rows = []
        for i in indices:
            tags = preview_set.tags[i]
            drawing = preview_set.drawing_of(i)
            truth = dataset.load_image(preview_set.paths[i])
            plane = model.tag_plane(tags, model.size)
            plane_image = Image.fromarray(np.uint8((plane + 1) * 127.5), 'L')
            rows.append([drawing, plane_image, model.colorize(drawing, tags), truth])
        labels = ['drawing', 'tag plane', 'output', 'truth']
        grid = colorize.sheet(rows, labels, cell=model.size)
        # The tags of each row, written over its tag-plane cell.
        draw = colorize.ImageDraw.Draw(grid)
        label_h = max(16, model.size // 8)
        small = colorize.font(max(10, model.size // 12))
        for r, i in enumerate(indices):
            text = colorize.label_text(','.join(preview_set.tags[i][:3]) or '(no tag)')
            draw.text((model.size + 3, label_h + r * model.size + 3), text, fill='red', font=small)
        os.makedirs(os.path.join(out, 'preview'), exist_ok=True)
        grid.save(os.path.join(out, 'preview', 'iter_{}.png'.format(trainer.updater.iteration)))

    return preview


def main(argv=None):
    args = parse_args(argv)
    try:
        device = compat.get_device(args.gpu)
    except compat.DeviceError as error:
        print('error: {}'.format(error), file=sys.stderr)
        return 1
    print('Device: {}'.format(device))
    print('# Minibatch-size: {}'.format(args.batchsize))
    print('# {}: {}'.format(*(('iteration', args.iteration) if args.iteration else ('epoch', args.epoch))))
    print('')
    chainer.global_config.cudnn_deterministic = True
    np.random.seed(args.seed)
    random.seed(args.seed)

    train_dir, test_dir = split_folders(args.dataset)
    try:
        train_set = dataset.TaggedImageDataset(train_dir, None, args.size, args.drawing, augment=True,
                                               flip=args.flip, tag_dropout=args.tag_dropout)
    except (FileNotFoundError, ValueError) as error:
        print('error: {} (make the default data with: python make_default_data.py)'.format(error),
              file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    if train_set.skipped:
        with open(os.path.join(args.out, 'skipped.txt'), 'w', encoding='utf-8') as f:
            f.writelines('{}\t{}\n'.format(path, reason) for path, reason in train_set.skipped)
    vectorizer = None
    saved_vectors = os.path.join(args.out, 'tag_vectors.txt')
    if not args.no_tag:
        if args.resume and os.path.exists(saved_vectors):
            vectorizer = tag_vectorizer.TagVectorizer.load(saved_vectors)  # the planes the snapshot learnt
        elif args.vectors:
            vectorizer = tag_vectorizer.TagVectorizer.load(args.vectors)
        elif args.tag_encoding == 'onehot':
            vectorizer = tag_vectorizer.TagVectorizer.one_hot(train_set.tags)
        else:
            vectorizer = tag_vectorizer.TagVectorizer.train(train_set.tags, dim=args.tag_dim, seed=args.seed)
        vectorizer.save(saved_vectors)
    train_set.vectorizer = vectorizer
    print('# training images: {} ({} without tags), vocabulary: {}'.format(
        len(train_set), train_set.untagged, len(vectorizer.kv) if vectorizer else 0))
    preview_set = dataset.TaggedImageDataset(test_dir or train_dir, vectorizer, args.size, args.drawing,
                                             augment=False)

    enc = Encoder(in_ch=4, width=args.width)
    dec = Decoder(out_ch=3, width=args.width)
    dis = Discriminator(in_ch=4, out_ch=3, width=args.width)
    for link in (enc, dec, dis):
        link.to_device(device)
    settings = dict(in_ch=4, out_ch=3, width=args.width, size=args.size,
                    tag_vectors='tag_vectors.txt' if vectorizer else None,
                    tag_encoding=None if args.no_tag else ('vectors' if args.vectors else args.tag_encoding),
                    drawing='paired' if train_set.line_root else args.drawing,
                    tag_dropout=args.tag_dropout, adv_weight=args.adv_weight,
                    lr=args.lr, batchsize=args.batchsize,
                    dataset=os.path.abspath(args.dataset))
    with open(os.path.join(args.out, 'model.json'), 'w', encoding='utf-8') as f:
        json.dump(settings, f, ensure_ascii=False, indent=1)

    train_iter = dataset.make_iterator(train_set, args.batchsize, args.loaderjob)
    updater = TextPix2pixUpdater(
        models=(enc, dec, dis), iterator={'main': train_iter},
        optimizer={'enc': make_optimizer(enc, args.lr), 'dec': make_optimizer(dec, args.lr),
                   'dis': make_optimizer(dis, args.lr)},
        device=device, adversarial_weight=args.adv_weight)
    stop = (args.iteration, 'iteration') if args.iteration else (args.epoch, 'epoch')
    trainer = training.Trainer(updater, stop, out=args.out)

    snapshot_interval = (args.snapshot_interval, 'iteration')
    display_interval = (args.display_interval, 'iteration')
    trainer.extend(extensions.snapshot(filename='snapshot_iter_{.updater.iteration}.npz', n_retains=3),
                   trigger=snapshot_interval)
    trainer.extend(lambda t: save_model(args.out, enc, dec), name='save_model', trigger=snapshot_interval)
    trainer.extend(extensions.LogReport(trigger=display_interval))
    trainer.extend(extensions.PrintReport(['epoch', 'iteration', 'enc/loss', 'dec/l1', 'dis/loss',
                                           'elapsed_time']), trigger=display_interval)
    if extensions.PlotReport.available():
        trainer.extend(extensions.PlotReport(['dec/l1', 'dis/loss'], 'iteration', file_name='loss.png',
                                             trigger=display_interval))
    trainer.extend(extensions.ProgressBar(update_interval=10))
    trainer.extend(RandomStates(), name='random_states')
    trainer.extend(preview_extension(colorize.ColorModel.from_networks(enc, dec, vectorizer, args.size),
                                     preview_set, args.out), trigger=snapshot_interval)

    if args.resume:
        resume = latest_snapshot(args.out) if args.resume == 'latest' else args.resume
        if not resume or not os.path.exists(resume):
            print('error: no snapshot to resume from: {}'.format(resume or 'none in ' + args.out), file=sys.stderr)
            return 1
        chainer.serializers.load_npz(resume, trainer)
        print('Resumed from {} at iteration {}'.format(resume, updater.iteration))

    try:
        trainer.run()
    except KeyboardInterrupt:
        path = os.path.join(args.out, 'snapshot_iter_{}.npz'.format(updater.iteration))
        chainer.serializers.save_npz(path, trainer)
        save_model(args.out, enc, dec)
        print('\nInterrupted at iteration {}: saved {}; resume with -r {}'.format(
            updater.iteration, path, path), file=sys.stderr)
        return 130
    save_model(args.out, enc, dec)
    print('Model saved in {} (colour with: python colorize.py --model {} -i DRAWING -t TAG)'.format(
        args.out, args.out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
