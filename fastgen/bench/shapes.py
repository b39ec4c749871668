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
# The coupling sizes: a (4096, 512) batch of 512-d vectors (a large-batch tabular /
# latent flow) and a (64, 12, 32, 32) image batch; full adds RealNVP's CIFAR-10 tensors at
# batch 64 (3x32x32 checkerboard, 12x16x16 after the squeeze, 6x16x16 at the last scale).
COUPLING_CHANNEL = {
    "quick": [(4096, 512), (64, 12, 32, 32)],
    "full": [(4096, 512), (64, 12, 32, 32), (64, 12, 16, 16), (16384, 1024)],
}
COUPLING_CHECKERBOARD = {
    "quick": [(64, 12, 32, 32)],
    "full": [(64, 12, 32, 32), (64, 3, 32, 32), (64, 6, 16, 16)],
}
# RealNVP training step at the paper's batch 64: the small CPU model on 1x28x28 images, and
# (full) the CIFAR-10 model (3x32x32, 64 channels, 8 residual blocks).
REALNVP_STEP = {
    "quick": [(64, 1, 28, 28)],
    "full": [(64, 1, 28, 28), (64, 3, 32, 32)],
}

# Image-to-image: instance norm, PixelShuffle

# GAN training core

# Face recognition: margin cross-entropy, triplet
