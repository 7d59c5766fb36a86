"""The training step of Chainer's pix2pix example, for drawing + tag plane inputs.

Losses as in the example: the generator (encoder and decoder) minimises
100 * L1(output, truth) + sum(softplus(-D(fake))) / (batch * w * h), the discriminator
sum(softplus(-D(real))) / (batch * w * h) + sum(softplus(D(fake))) / (batch * w * h).

The example runs two backward passes through the decoder: one from the encoder's loss
(which updates the encoder), and, after unchaining the encoder's outputs, one from the
decoder's loss, which is the same number computed from the same graph, so it gives the
decoder exactly the gradients the first pass did. Here one backward pass fills both
networks' gradients, then both are updated; tests/test_updater.py checks that this is
the example's update to the last bit. ``enc/loss`` and ``dec/loss`` are both reported,
as in the example.

Each backward pass follows only the paths to the parameters it updates (``backward``
below): the generator's skips the discriminator's weight gradients, which the example
computes and then clears, and the discriminator's stops at the generated image instead
of computing its gradient. The updated parameters get the same gradients
(tests/test_speedups.py). A ``loss_scale`` given to the updater (for Chainer's mixed16)
scales both passes, as Chainer's own ``Optimizer.update(lossfun)`` does; those passes
are Chainer's full ``loss.backward``, which records the scale for the optimizer.

``make_optimizer`` is the example's (it defines it inside train_facade.py's main).

addition to the example: with the film tag design's saturation gate
(net.SaturationGate), the generator's loss also holds ``gate_weight`` times the gate's
own loss, reported as ``dec/gate``: whether the target is in colour, read from the
target itself (net.in_colour).
"""
import compat  # noqa: F401  (Chainer shims; must precede chainer)
import chainer
import chainer.functions as F

import net


def make_optimizer(model, alpha, beta1=0.5):
    """The example's Adam with weight decay 1e-5 (its alpha default, 2e-4, is the caller's)."""
    optimizer = chainer.optimizers.Adam(alpha=alpha, beta1=beta1)
    optimizer.setup(model)
    optimizer.add_hook(chainer.optimizer.WeightDecay(0.00001), 'hook_dec')
    return optimizer


def generator_loss(x_out, t_out, y_fake, lam1=100, lam2=1):
    batchsize, _, w, h = y_fake.shape
    loss_rec = lam1 * F.mean_absolute_error(x_out, t_out)
    loss_adv = lam2 * F.sum(F.softplus(-y_fake)) / batchsize / w / h
    return loss_rec + loss_adv, loss_rec


def discriminator_loss(y_real, y_fake):
    batchsize, _, w, h = y_real.shape
    loss_real = F.sum(F.softplus(-y_real)) / batchsize / w / h
    loss_fake = F.sum(F.softplus(y_fake)) / batchsize / w / h
    return loss_real + loss_fake


def backward(loss, params, loss_scale=None):
    """``loss.backward()`` into ``params`` only: chainer.grad runs backprop along just the
    paths from the loss to them and leaves the gradients in ``param.grad`` as backward
    does. With a loss scale, or with ``user_fast_paths`` 'off' (fast_conv.py), it is the
    example's full ``loss.backward()``: only that records the scale for the optimizer."""
    if loss_scale is not None or getattr(chainer.config, 'user_fast_paths', 'cpu') == 'off':
        for param in params:
            param.cleargrad()
        loss.backward(loss_scale=loss_scale)
        return
    grads = chainer.grad([loss], params)
    for param, grad in zip(params, grads):
        param.grad_var = grad


class TextPix2pixUpdater(chainer.training.StandardUpdater):
    """Updates encoder, decoder and discriminator once per mini-batch."""

    def __init__(self, *args, **kwargs):
        self.enc, self.dec, self.dis = kwargs.pop('models')
        # The example's weight of the adversarial term (lam2); 0 trains the generator on
        # L1 alone, the ablation in README "Results".
        self.adversarial_weight = kwargs.pop('adversarial_weight', 1)
        # The weight of the saturation gate's own loss (the film design; 0: none).
        self.gate_weight = kwargs.pop('gate_weight', 0)
        super().__init__(*args, **kwargs)

    def update_core(self):
        enc_optimizer = self.get_optimizer('enc')
        dec_optimizer = self.get_optimizer('dec')
        dis_optimizer = self.get_optimizer('dis')
        enc, dec, dis = self.enc, self.dec, self.dis

        batch = self.get_iterator('main').next()
        x_in, t_out = self.converter(batch, self.device)

        features = enc(x_in)
        x_out = dec(features)
        y_fake = dis(x_in, x_out)
        y_real = dis(x_in, t_out)

        loss_gen, loss_l1 = generator_loss(x_out, t_out, y_fake, lam2=self.adversarial_weight)
        if self.gate_weight and hasattr(dec, 'gate'):
            loss_gate = dec.gate.loss(features[1], net.in_colour(t_out))
            loss_gen = loss_gen + self.gate_weight * loss_gate
            chainer.report({'gate': loss_gate}, dec)
        backward(loss_gen, list(enc.params()) + list(dec.params()), self.loss_scale)
        enc_optimizer.update()
        dec_optimizer.update()
        chainer.report({'loss': loss_gen}, enc)
        # deviation from the example: dec/l1 also reports the reconstruction term as it
        # enters the loss (100 * L1), to watch it apart from the adversarial term.
        chainer.report({'loss': loss_gen, 'l1': loss_l1}, dec)

        x_out.unchain_backward()
        loss_dis = discriminator_loss(y_real, y_fake)
        backward(loss_dis, list(dis.params()), self.loss_scale)
        dis_optimizer.update()
        chainer.report({'loss': loss_dis}, dis)
