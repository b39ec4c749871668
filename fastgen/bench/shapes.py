"""Standard benchmark shapes, from the papers' own settings. bench/shapes.py re-exports these
for the pytest-benchmark files; the fastgen-bench runner reads them from here (it must work
from an installed package).

Each entry: {"quick": [...], "full": [...]}; --quick (the default) runs the first list.
"""

# VAE posterior (mu, logvar): Kingma & Welling's MNIST VAE has a 20-d latent and batch 100;
# (256, 128) is a typical small latent, (4096, 512) a large-batch / wide-latent training step;
# (64, 16, 16, 16) a convolutional latent map (e.g. a VQ/conv VAE at 64x64 input).
REPARAM_KL = {
    "quick": [(256, 128), (4096, 512)],
    "full": [(100, 20), (256, 128), (4096, 512), (64, 16, 16, 16), (16384, 1024)],
}

# RealNVP coupling

# Image-to-image: instance norm, PixelShuffle
# SRGAN upsampler input (conv output before PixelShuffle(2) + PReLU): the x4 SRResNet's first
# stage at its 24x24 training crops (16, 256, 24, 24), its second stage (16, 256, 48, 48), and a
# larger (16, 256, 64, 64) map.
PIXEL_SHUFFLE_PRELU = {
    "quick": [(16, 256, 24, 24), (16, 256, 64, 64)],
    "full": [(16, 256, 24, 24), (16, 256, 48, 48), (16, 256, 64, 64)],
}
PIXEL_SHUFFLE_PRELU_CHANNELS_LAST = {
    "quick": [(16, 256, 24, 24)],
    "full": [(16, 256, 24, 24), (16, 256, 48, 48), (16, 256, 64, 64)],
}
# SRResNet training step: batch 16 of 24x24 low-resolution crops (96x96 HR, x4), as in the paper.
SRRESNET_TRAIN = {"quick": [(16, 3, 24, 24)], "full": [(16, 3, 24, 24)]}

# GAN training core

# Face recognition: margin cross-entropy, triplet
