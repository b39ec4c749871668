"""Examples that train for real on data shipped with scikit-learn; see README.md.

python -m examples.vae [--steps N] [--compare-eager]
make demo        # every example in its default setting
"""
