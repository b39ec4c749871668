"""The plain-torch layer set the eager twins are built from (see fastgen/models/_layers.py)."""
from fastgen.models._layers import Layers
from fastgen.reference import reparam_kl

EAGER = Layers(Reparameterize=reparam_kl.Reparameterize)
