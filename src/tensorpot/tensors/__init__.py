"""Cartesian tensor math: STF projection, Cartesian harmonics, irreducible products.

Pure functions on ``torch.Tensor``; no ``torch.nn``, no state. Tables (projectors, bases,
coupling tensors) are float64 and cached; modules in :mod:`tensorpot.nn` register them as buffers.
"""

from tensorpot.tensors.harmonics import (
    cartesian_harmonic,
    compressed_harmonics,
    from_compressed,
    harmonic_norm,
    stf_basis,
    to_compressed,
)
from tensorpot.tensors.products import (
    Path,
    coupling_paths,
    coupling_tensor,
    even_constant,
    ict_product,
    is_admissible,
    path_multiplicities,
    product_paths,
    unit_coupling,
)
from tensorpot.tensors.stf import double_factorial, stf_matrix, stf_project, symmetrize

__all__ = [
    "Path",
    "cartesian_harmonic",
    "compressed_harmonics",
    "coupling_paths",
    "coupling_tensor",
    "double_factorial",
    "even_constant",
    "from_compressed",
    "harmonic_norm",
    "ict_product",
    "is_admissible",
    "path_multiplicities",
    "product_paths",
    "stf_basis",
    "stf_matrix",
    "stf_project",
    "symmetrize",
    "to_compressed",
    "unit_coupling",
]
