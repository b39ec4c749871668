"""DCGAN on scikit-learn's digits (upsampled to 16x16): sample grids over training.

    python -m examples.dcgan [--steps N] [--compare-eager]

fastgen's part of a DCGAN is the loss (fused BCE on logits); the convolutions are torch's. The
metric is a Fréchet distance on pixels between 500 samples and the digits (see _common).
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: python examples/dcgan.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from examples import _gan
from fastgen import models
from fastgen.reference import models as eager

CONFIG = dict(latent_dim=32, image_size=16, channels=1, g_features=64, d_features=64)


def make_step(model, batches, rng):
    """One discriminator step then one generator step, Adam(2e-4, betas=(0.5, 0.999)) as in the paper."""
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def step(i):
        batch = batches.next()
        d_loss = model.discriminator_loss(batch, model.latent(len(batch), rng))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = model.generator_loss(model.latent(len(batch), rng))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        return {"loss": d_loss.item(), "g_loss": g_loss.item()}

    return step


def main(argv=None):
    return _gan.main(
        argv,
        doc=__doc__,
        name="dcgan",
        model_cls=models.DCGAN,
        twin_cls=eager.DCGAN,
        config=CONFIG,
        default_steps=2000,
        make_step=make_step,
        title="DCGAN samples (fixed latents)",
    )


if __name__ == "__main__":
    main()
