"""Standard benchmark shapes, from the papers' own settings, read by the registered cases
(fastgen/bench/cases/), which both fastgen-bench and bench/bench_cases.py time (the runner must
work from an installed package, hence here).

Each entry: {"quick": [...], "full": [...]}; --quick (the default) runs the first list.
"""

# VAE posterior (mu, logvar): Kingma & Welling's MNIST VAE has a 20-d latent and batch 100;
# (256, 128) is a typical small latent, (4096, 512) a large-batch / wide-latent training step;
# (64, 16, 16, 16) a convolutional latent map (e.g. a VQ/conv VAE at 64x64 input).
REPARAM_KL = {
    "quick": [(256, 128), (4096, 512)],
    "full": [(100, 20), (256, 128), (4096, 512), (64, 16, 16, 16), (16384, 1024)],
}

# A whole VAE training step (negative ELBO, all gradients): Kingma & Welling's MNIST MLP VAE,
# 784-400-20, at batch 128 (batch, features); full adds a 4096 batch.
VAE_STEP = {"quick": [(128, 784)], "full": [(128, 784), (4096, 784)]}

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
# Instance norm + activation (CycleGAN / pix2pix): (8, 256, 64, 64) is a batch of the ResNet
# generator's 64x64x256 blocks, (1, 64, 256, 256) its first layer at CycleGAN's batch size 1;
# the PatchGAN discriminator's norms see (1, 128, 64, 64), (1, 256, 32, 32), (1, 512, 31, 31).
INSTANCE_NORM = {
    "quick": [(8, 256, 64, 64), (1, 64, 256, 256)],
    "full": [(8, 256, 64, 64), (1, 64, 256, 256), (1, 256, 64, 64), (1, 128, 128, 128)],
}
INSTANCE_NORM_RESIDUAL = {"quick": [(1, 256, 64, 64)], "full": [(1, 256, 64, 64), (8, 256, 64, 64)]}
INSTANCE_NORM_DISCRIMINATOR = {
    "quick": [(1, 128, 64, 64)],
    "full": [(1, 128, 64, 64), (1, 256, 32, 32), (1, 512, 31, 31)],
}
# Generator training steps on (batch, channels, height, width) images: CycleGAN and pix2pix
# train at batch 1 on 256x256 crops (--full). A step there takes seconds, so the quick set
# uses 128x128 crops to keep `make bench` short (the same layers at a quarter of the pixels).
CYCLEGAN_GENERATOR = {"quick": [(1, 3, 128, 128)], "full": [(1, 3, 128, 128), (1, 3, 256, 256)]}
PIX2PIX_GENERATOR = {"quick": [(1, 3, 128, 128)], "full": [(1, 3, 128, 128), (1, 3, 256, 256)]}
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
# WGAN-GP interpolation and penalty on critic-input-sized tensors: DCGAN's 64x64 RGB at batch 64,
# and 256x256 RGB at batch 16; (64, 1, 28, 28) the MNIST variant.
GAN_IMAGES = {
    "quick": [(64, 3, 64, 64), (16, 3, 256, 256)],
    "full": [(64, 1, 28, 28), (64, 3, 64, 64), (16, 3, 256, 256)],
}
# Progressive GAN pixel norm (Karras et al.: batch 16, 512 feature maps up to 32x32, 256 at 64x64;
# (16, 512) is the normalized latent).
PIXEL_NORM = {
    "quick": [(16, 512, 16, 16)],
    "full": [(16, 512), (16, 512, 4, 4), (16, 512, 16, 16), (16, 512, 32, 32), (16, 256, 64, 64)],
}
# A whole WGAN-GP critic step with the DCGAN-style critic (batch, channels, side, side): the
# WGAN-GP paper's CIFAR-10 setting (batch 64, 32x32), and DCGAN's 64x64.
WGAN_GP_STEP = {
    "quick": [(64, 3, 32, 32)],
    "full": [(64, 3, 32, 32), (64, 3, 64, 64)],
}

# Face recognition: margin cross-entropy, triplet
# ArcFace (Deng et al.): 512-d embeddings; (B, C, E) with C from 10k (a mid-size identity set)
# to 100k classes (MS1M-scale; Partial FC shards millions across GPUs).
MARGIN_CE = {
    "quick": [(512, 10_000, 512), (256, 100_000, 512)],
    "full": [(128, 10_000, 512), (512, 10_000, 512), (256, 100_000, 512)],
}
# ArcFaceNet training step (batch, classes): the conv encoder on 3x32x32 images, a 512-d
# BatchNorm'd embedding and the ArcFace head at 10k and 100k classes (the head's 10k x 512 /
# 100k x 512 class centers dominate: at 100k they are 200 MB of float32).
ARCFACE_STEP = {
    "quick": [(64, 10_000), (64, 100_000)],
    "full": [(64, 10_000), (64, 100_000), (256, 10_000), (256, 100_000)],
}
# Batch-hard triplet (Hermans et al.): P x K batches (here K = 4 images per identity) of
# FaceNet's 128-d embeddings; (B, E).
BATCH_HARD_TRIPLET = {
    "quick": [(512, 128)],
    "full": [(128, 128), (512, 128), (512, 512), (2048, 128)],
}
