"""Learnable parameter counts of every entry's model: the paper's construction (the paper scale's
model, counted on the meta device) and the model actually run at the plan's scale."""
from __future__ import annotations

import json

from .experiments import SCALES_DIR, Plan, compose, load_scale


def _num_classes(data: dict) -> int:
    from protoseg.data.specs import get_spec

    if data.get("top_n"):
        return int(data["top_n"])
    return get_spec(data["dataset"]).num_classes


def parameter_table(plan: Plan, *, scales_dir: str = SCALES_DIR) -> dict:
    from protoseg.models import ModelConfig
    from protoseg.models.params import count_config_parameters

    scales = {"paper": load_scale("paper", scales_dir), plan.scale: plan.scale_config}
    cache: dict[str, int] = {}

    def count(scale_name: str, entry) -> int:
        composed = compose(entry, scales[scale_name])
        model = dict(composed["model"], num_classes=_num_classes(composed["data"]), pretrained=None)
        tag = json.dumps(model, sort_keys=True)
        if tag not in cache:
            cache[tag] = count_config_parameters(ModelConfig.from_dict(model).resolved())
        return cache[tag]

    entries = {}
    for entry in plan.entries.values():
        entries[entry.id] = {"paper_construction": count("paper", entry), "as_run": count(plan.scale, entry),
                             "run": plan.entry_run[entry.id]}
    return {"scale": plan.scale, "entries": entries}
