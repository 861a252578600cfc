"""The work plan's old address: units are cut from the selection at the data level (chatspace.data.units)."""

from chatspace.data.units import WorkUnit, num_units, plan_units, unit_sizes

__all__ = ["WorkUnit", "num_units", "plan_units", "unit_sizes"]
