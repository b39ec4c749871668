"""WGAN-GP on scikit-learn's digits (upsampled to 16x16): sample grids over training.

    python -m examples.wgan_gp [--steps N] [--compare-eager]

One step is the paper's generator iteration: n_critic = 5 critic steps, each with fastgen's
fused interpolation and gradient penalty (and its double backward, through fastgen's instance
norm in the critic), then one generator step. The metric is a Fréchet distance on pixels
between 500 samples and the digits (see _common).
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: python examples/wgan_gp.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from examples import _gan
from fastgen import models
from fastgen.reference import models as eager

# The paper's Adam betas (0, 0.9) and n_critic = 5; a larger learning rate than its 1e-4 so that
# a one-minute run gets somewhere.
CONFIG = dict(
    latent_dim=32,
    image_size=16,
    channels=1,
    g_features=32,
    d_features=32,
    critic_norm="instance",
    lr_generator=5e-4,
    lr_critic=5e-4,
)


def make_step(model, batches, rng):
    opt_g, opt_c = model.optimizers()

    def step(i):
        logs = model.train_step([batches.next() for _ in range(model.n_critic)], opt_g, opt_c, generator=rng)
        return {"loss": logs["critic_loss"].item(), "g_loss": logs["generator_loss"].item()}

    return step


def main(argv=None):
    return _gan.main(
        argv,
        doc=__doc__,
        name="wgan_gp",
        model_cls=models.WGANGP,
        twin_cls=eager.WGANGP,
        config=CONFIG,
        default_steps=600,
        make_step=make_step,
        title="WGAN-GP samples (fixed latents)",
    )


if __name__ == "__main__":
    main()
