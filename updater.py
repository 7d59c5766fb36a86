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
"""
import compat  # noqa: F401  (Chainer shims; must precede chainer)
import chainer
import chainer.functions as F


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


class TextPix2pixUpdater(chainer.training.StandardUpdater):
    """Updates encoder, decoder and discriminator once per mini-batch."""

    def __init__(self, *args, **kwargs):
        self.enc, self.dec, self.dis = kwargs.pop('models')
        super().__init__(*args, **kwargs)

    def update_core(self):
        enc_optimizer = self.get_optimizer('enc')
        dec_optimizer = self.get_optimizer('dec')
        dis_optimizer = self.get_optimizer('dis')
        enc, dec, dis = self.enc, self.dec, self.dis

        batch = self.get_iterator('main').next()
        x_in, t_out = self.converter(batch, self.device)

        x_out = dec(enc(x_in))
        y_fake = dis(x_in, x_out)
        y_real = dis(x_in, t_out)

        loss_gen, loss_l1 = generator_loss(x_out, t_out, y_fake)
        enc.cleargrads()
        dec.cleargrads()
        loss_gen.backward()
        enc_optimizer.update()
        dec_optimizer.update()
        chainer.report({'loss': loss_gen}, enc)
        chainer.report({'loss': loss_gen, 'l1': loss_l1}, dec)

        x_out.unchain_backward()
        loss_dis = discriminator_loss(y_real, y_fake)
        dis.cleargrads()
        loss_dis.backward()
        dis_optimizer.update()
        chainer.report({'loss': loss_dis}, dis)
