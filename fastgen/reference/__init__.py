"""Eager PyTorch references: the executable specification of every fastgen op and layer.

Written as a user would write them, from torch ops only. Tests compare fastgen against
these (in float64 as the ground truth); benchmarks time them as "eager". The fast path
never calls them.
"""
