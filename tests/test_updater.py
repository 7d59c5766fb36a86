"""The training step: the example's update, exactly, and a loss that falls."""
import copy

import numpy as np

import compat  # noqa: F401
import chainer
import chainer.functions as F

import net
from updater import make_optimizer
from updater import TextPix2pixUpdater


def make_models(width=8, seed=0):
    np.random.seed(seed)
    return net.Encoder(4, width=width), net.Decoder(3, width=width), net.Discriminator(4, 3, width=width)


def fixed_batch(n=1, size=128, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1, 1, (n, 4, size, size)).astype(np.float32)
    t = np.tanh(x[:, :3] * 2 + x[:, 3:]).astype(np.float32)
    return [(x[i], t[i]) for i in range(n)]


def make_updater(models, batch, lr=2e-4, **kwargs):
    """The example's updater over ``batch``; ``kwargs``: TextPix2pixUpdater's others (device, ...)."""
    iterator = chainer.iterators.SerialIterator(batch, len(batch), shuffle=False)
    optimizers = {name: make_optimizer(m, lr) for name, m in zip(('enc', 'dec', 'dis'), models)}
    return TextPix2pixUpdater(models=models, iterator={'main': iterator}, optimizer=optimizers, **kwargs)


class ExampleLosses:
    """The loss methods of FacadeUpdater in Chainer's examples/pix2pix/updater.py, as the
    example writes them (MIT licence), so that a fault in updater.py's losses cannot hide
    on both sides of the comparison."""

    def loss_enc(self, enc, x_out, t_out, y_out, lam1=100, lam2=1):
        batchsize, _, w, h = y_out.shape
        loss_rec = lam1*(F.mean_absolute_error(x_out, t_out))
        loss_adv = lam2*F.sum(F.softplus(-y_out)) / batchsize / w / h
        loss = loss_rec + loss_adv
        chainer.report({'loss': loss}, enc)
        return loss

    def loss_dec(self, dec, x_out, t_out, y_out, lam1=100, lam2=1):
        batchsize, _, w, h = y_out.shape
        loss_rec = lam1*(F.mean_absolute_error(x_out, t_out))
        loss_adv = lam2*F.sum(F.softplus(-y_out)) / batchsize / w / h
        loss = loss_rec + loss_adv
        chainer.report({'loss': loss}, dec)
        return loss

    def loss_dis(self, dis, y_in, y_out):
        batchsize, _, w, h = y_in.shape

        L1 = F.sum(F.softplus(-y_in)) / batchsize / w / h
        L2 = F.sum(F.softplus(y_out)) / batchsize / w / h
        loss = L1 + L2
        chainer.report({'loss': loss}, dis)
        return loss


def example_update(models, optimizers, x_in, t_out):
    """The example's update_core, two backward passes and all, with its own losses."""
    enc, dec, dis = models
    enc_optimizer, dec_optimizer, dis_optimizer = optimizers
    losses = ExampleLosses()

    x_in = chainer.Variable(x_in)
    z = enc(x_in)
    x_out = dec(z)
    y_fake = dis(x_in, x_out)
    y_real = dis(x_in, t_out)
    enc_optimizer.update(losses.loss_enc, enc, x_out, t_out, y_fake)
    for z_ in z:
        z_.unchain_backward()
    dec_optimizer.update(losses.loss_dec, dec, x_out, t_out, y_fake)
    x_in.unchain_backward()
    x_out.unchain_backward()
    dis_optimizer.update(losses.loss_dis, dis, y_real, y_fake)


def params(models):
    return {'%d%s' % (i, name): p.array.copy() for i, m in enumerate(models) for name, p in m.namedparams()}


def test_one_backward_pass_is_the_examples_update():
    batch = fixed_batch(n=2)
    ours = make_models()
    theirs = copy.deepcopy(ours)
    updater = make_updater(ours, batch)
    their_optimizers = [make_optimizer(m, 2e-4) for m in theirs]
    x_in = np.stack([b[0] for b in batch])
    t_out = np.stack([b[1] for b in batch])
    for step in range(3):
        np.random.seed(100 + step)  # the same dropout masks in both
        with chainer.using_config('train', True):
            updater.update()
        np.random.seed(100 + step)
        with chainer.using_config('train', True):
            example_update(theirs, their_optimizers, x_in, t_out)
        a, b = params(ours), params(theirs)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # ...and the update did something.
    assert any(not np.array_equal(a[k], v) for k, v in params(make_models()).items())


def test_l1_falls_on_a_fixed_batch():
    batch = fixed_batch(n=1)
    models = make_models()
    updater = make_updater(models, batch, lr=1e-3)
    enc, dec, _ = models
    x = batch[0][0][None]

    def l1():
        with net.generating():
            return float(F.mean_absolute_error(dec(enc(x)), batch[0][1][None]).array)
    before = l1()
    for _ in range(30):
        updater.update()
    after = l1()
    assert after < 0.6 * before, (before, after)


def test_losses_are_reported():
    models = make_models()
    updater = make_updater(models, fixed_batch())
    reporter = chainer.Reporter()
    for name, m in zip(('enc', 'dec', 'dis'), models):
        reporter.add_observer(name, m)
    observation = {}
    with reporter.scope(observation):
        updater.update()
    assert {'enc/loss', 'dec/loss', 'dec/l1', 'dis/loss'} <= set(observation)
    assert float(observation['enc/loss'].array) == float(observation['dec/loss'].array)


def test_adversarial_weight_zero_trains_the_generator_on_l1_alone():
    """--adv-weight 0: the generator's loss is the 100 * L1 term, the discriminator still learns."""
    models = make_models()
    iterator = chainer.iterators.SerialIterator(fixed_batch(), 1, shuffle=False)
    optimizers = {name: make_optimizer(m, 2e-4) for name, m in zip(('enc', 'dec', 'dis'), models)}
    updater = TextPix2pixUpdater(models=models, iterator={'main': iterator}, optimizer=optimizers,
                                 adversarial_weight=0)
    reporter = chainer.Reporter()
    for name, m in zip(('enc', 'dec', 'dis'), models):
        reporter.add_observer(name, m)
    dis_before = {k: v.copy() for k, v in params(models[2:]).items()}
    observation = {}
    with reporter.scope(observation):
        updater.update()
    assert float(observation['dec/loss'].array) == float(observation['dec/l1'].array)
    assert any(not np.array_equal(dis_before[k], v) for k, v in params(models[2:]).items())
