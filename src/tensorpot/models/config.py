"""The keys every model family shares: elements, cutoff, energy references, dtype, outputs.

A family's config class subclasses :class:`PotentialConfig` and adds its own hyperparameters;
it stays the single home of their defaults. ``outputs`` chooses the heads
(:mod:`tensorpot.nn.heads`): ``["energy"]`` by default, any of ``"energy"``, ``"dipole"``,
``"polarizability"`` and named scalar properties, given as mappings
``{"property": "gap", "reduction": "mean"}`` (``"sum"`` for extensive properties such as U0).
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PerSpecies = Union[float, list[float]]  # noqa: UP007 (pydantic field type)

#: the rank of the per-atom features each built-in output reads
OUTPUT_RANKS = {"energy": 0, "dipole": 1, "polarizability": 2}


class PropertyOutput(BaseModel):
    """A named scalar property per structure (QM9 style), read out of the invariant features.

    ``shift`` and ``scale`` set the readout's offset and spread (per atom for ``"sum"``, per
    structure for ``"mean"``); training fills them from the labels unless given.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    property: str = Field(min_length=1, description="the property's name, as in property_keys")
    reduction: Literal["sum", "mean"] = "sum"
    shift: float = 0.0
    scale: float = Field(1.0, gt=0.0)


Output = Union[Literal["energy", "dipole", "polarizability"], PropertyOutput]  # noqa: UP007


class PotentialConfig(BaseModel):
    """Keys shared by every family; ``E0s`` is ``{Z: eV}`` or a list in species order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    r_max: float = Field(5.0, gt=0, description="cutoff radius r_c (Å)")
    atomic_numbers: list[int] = Field(default_factory=lambda: [1, 6, 7, 8])
    E0s: dict[int, float] | list[float] | None = None
    atomic_inter_scale: PerSpecies = 1.0
    atomic_inter_shift: PerSpecies = 0.0
    outputs: list[Output] = Field(default_factory=lambda: ["energy"])
    head_hidden: int = Field(16, ge=1, description="hidden width of the output heads' MLPs")
    dtype: Literal["float32", "float64"] = "float64"
    seed: int = 0

    @field_validator("outputs")
    @classmethod
    def _distinct_outputs(cls, value: list[Output]) -> list[Output]:
        names = [o if isinstance(o, str) else f"property {o.property}" for o in value]
        if not names:
            raise ValueError("at least one output is needed, e.g. [energy]")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"outputs named twice: {duplicates}")
        return value

    @model_validator(mode="after")
    def _check_elements(self) -> PotentialConfig:
        zs = self.atomic_numbers
        if not zs or len(set(zs)) != len(zs) or not all(1 <= z <= 118 for z in zs):
            raise ValueError(f"atomic_numbers must be distinct elements 1..118, got {zs}")
        if isinstance(self.E0s, dict) and set(self.E0s) != set(zs):
            raise ValueError(f"E0s has elements {sorted(self.E0s)}, atomic_numbers {sorted(zs)}")
        if isinstance(self.E0s, list) and len(self.E0s) != len(zs):
            raise ValueError(f"E0s has {len(self.E0s)} values for {len(zs)} atomic_numbers")
        return self

    def e0_list(self) -> list[float] | None:
        """The E0s in the order of ``atomic_numbers`` (None when not given)."""
        if isinstance(self.E0s, dict):
            return [self.E0s[z] for z in self.atomic_numbers]
        return self.E0s

    def potential_arguments(self) -> dict:
        """The arguments of :class:`tensorpot.models.base.Potential` these keys set (a family's
        model passes them on: ``super().__init__(**config.potential_arguments())``)."""
        return {
            "atomic_numbers": self.atomic_numbers,
            "r_max": self.r_max,
            "E0s": self.e0_list(),
            "scale": self.atomic_inter_scale,
            "shift": self.atomic_inter_shift,
            "outputs": self.outputs,
        }

    @property
    def output_names(self) -> list[str]:
        """``"energy"``, ``"dipole"``, ``"polarizability"`` or ``"property:<name>"`` per output."""
        return [o if isinstance(o, str) else f"property:{o.property}" for o in self.outputs]

    @property
    def properties(self) -> list[PropertyOutput]:
        """The scalar property outputs."""
        return [o for o in self.outputs if isinstance(o, PropertyOutput)]

    @property
    def output_rank(self) -> int:
        """The largest feature rank the outputs read (0 energy and properties, 1 dipole, 2
        polarizability)."""
        return max(OUTPUT_RANKS.get(o, 0) if isinstance(o, str) else 0 for o in self.outputs)
