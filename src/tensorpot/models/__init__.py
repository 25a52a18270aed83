"""Model families (one module each) and the functions that build, save and load them."""

from tensorpot.models.base import Potential, Predictions
from tensorpot.models.build import build_model
from tensorpot.models.io import load_model, save_model

__all__ = ["Potential", "Predictions", "build_model", "load_model", "save_model"]
