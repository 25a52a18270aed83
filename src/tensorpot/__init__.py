"""tensorpot: machine-learned interatomic potentials from irreducible Cartesian tensors."""

__version__ = "0.1.0"

from tensorpot.models import build_model, load_model, save_model  # noqa: E402

__all__ = ["__version__", "build_model", "load_model", "save_model"]
