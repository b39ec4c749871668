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

# GAN training core

# Face recognition: margin cross-entropy, triplet
# ArcFace (Deng et al.): 512-d embeddings; (B, C, E) with C from 10k (a mid-size identity set)
# to 100k classes (MS1M-scale; Partial FC shards millions across GPUs).
MARGIN_CE = {
    "quick": [(512, 10_000, 512), (256, 100_000, 512)],
    "full": [(128, 10_000, 512), (512, 10_000, 512), (256, 100_000, 512)],
}
# Batch-hard triplet (Hermans et al.): P x K batches (here K = 4 images per identity) of
# FaceNet's 128-d embeddings; (B, E).
BATCH_HARD_TRIPLET = {
    "quick": [(512, 128)],
    "full": [(128, 128), (512, 128), (512, 512), (2048, 128)],
}
