"""Drop-in modules built on fastgen.functional (torch's signatures, defaults and state_dict keys
where torch has the module)."""
from fastgen.nn.vae import Reparameterize

__all__ = ["Reparameterize"]
