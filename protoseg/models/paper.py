"""The model of every reproduced row of the paper's tables, and its ``# Param`` as printed.

``PAPER_ROWS`` copies the parameter counts of the ``reproduce: true`` rows of
``shared/paper/tables.yaml`` (a test checks the copy against that file when it is present), so that
the package and its tests do not depend on the shared folder. ``PARAM_DEVIATIONS`` lists the rows
whose printed count our faithful construction cannot meet within 0.05M at that table's class count,
each with the reason; ``docs/models.md`` explains them.
"""
from __future__ import annotations

from dataclasses import dataclass

from protoseg.config import ModelConfig

PARAM_TOLERANCE_M = 0.05  # recipes.md: a model built here must match the paper within 0.05M
DATASET_CLASSES: dict[str, int] = {"ade20k": 150, "cityscapes": 19, "coco_stuff": 171}
TABLE_DATASETS: dict[str, str] = {"table1": "ade20k", "table2": "cityscapes", "table3": "coco_stuff",
                                  "table6": "cityscapes", "table7": "ade20k", "table4": "ade20k_full"}
# the paper's backbone names -> ours (Table 4 and the ablations use MiT-B2)
PAPER_BACKBONES: dict[str, str] = {"ResNet-101": "resnet101", "HRNetV2-W48": "hrnet_w48",
                                   "Swin-Base": "swin_base", "MiT-B0": "mit_b0", "MiT-B2": "mit_b2",
                                   "MiT-B4": "mit_b4", "MiT-B5": "mit_b5"}
TABLE4_CLASSES: tuple[int, ...] = (150, 300, 500, 700, 847)


@dataclass(frozen=True)
class PaperRow:
    """One reproduced row (one column of Table 4) with the learnable parameter count it prints."""

    table: str
    method: str
    backbone: str  # the paper's name, a key of PAPER_BACKBONES
    head: str  # "parametric" | "prototype"
    num_classes: int
    params_m: float
    prototypes_per_class: int = 10  # K (Table 4 varies it)

    @property
    def key(self) -> str:
        key = f"{self.table}/{self.method}/{self.backbone}"
        if self.table == "table4":
            key += f"/K{self.prototypes_per_class}/C{self.num_classes}"
        return key

    def config(self, num_classes: int | None = None) -> ModelConfig:
        """The model of this row, with the table's dataset class count unless ``num_classes`` is given.

        Parametric rows use the softmax classifier, except Table 4's K = 10 parametric row
        (K learnable prototypes per class); prototype rows the paper variant of the nonparametric head.
        """
        k = self.prototypes_per_class
        if self.head == "prototype":
            head = "prototype"
        else:
            head = "learnable_prototypes" if self.table == "table4" and k > 1 else "softmax"
        return ModelConfig(backbone=PAPER_BACKBONES[self.backbone], head=head, num_prototypes=k,
                           num_classes=self.num_classes if num_classes is None else num_classes)


def _main_tables() -> list[PaperRow]:
    pairs = {  # backbone -> (baseline method, parametric params, prototype params), Tables 1-3
        "ResNet-101": ("FCN", 68.6, 68.5), "HRNetV2-W48": ("HRNet", 65.9, 65.8),
        "Swin-Base": ("Swin", 90.6, 90.5), "MiT-B4": ("SegFormer", 64.1, 64.0),
    }
    rows = []
    for table in ("table1", "table2", "table3"):
        classes = DATASET_CLASSES[TABLE_DATASETS[table]]
        for backbone, (method, parametric, prototype) in pairs.items():
            rows.append(PaperRow(table, method, backbone, "parametric", classes, parametric))
            rows.append(PaperRow(table, "Ours", backbone, "prototype", classes, prototype))
    rows += [PaperRow("table6", "SegFormer", "MiT-B5", "parametric", 19, 84.7),
             PaperRow("table6", "Ours", "MiT-B5", "prototype", 19, 84.6),
             PaperRow("table7", "SegFormer", "MiT-B0", "parametric", 150, 3.8),
             PaperRow("table7", "Ours", "MiT-B0", "prototype", 150, 3.7)]
    return rows


def _table4() -> list[PaperRow]:
    printed = {  # (method, K) -> params_m at 150, 300, 500, 700, 847 classes
        ("parametric", 1): (27.48, 27.62, 27.80, 27.98, 28.11),
        ("nonparametric (ours)", 1): (27.37,) * 5,
        ("parametric", 10): (28.56, 29.66, 31.26, 32.86, 33.96),
        ("nonparametric (ours)", 10): (27.37,) * 5,
    }
    return [PaperRow("table4", method, "MiT-B2", "parametric" if method == "parametric" else "prototype",
                     classes, params, prototypes_per_class=k)
            for (method, k), counts in printed.items() for classes, params in zip(TABLE4_CLASSES, counts)]


# Table 4's classifier-only column (proto_params_m): the learnable prototypes of the parametric rows
TABLE4_PROTO_PARAMS_M: dict[int, tuple[float, ...]] = {1: (0.12, 0.23, 0.39, 0.54, 0.65),
                                                        10: (1.2, 2.3, 3.9, 5.4, 6.5)}

PAPER_ROWS: tuple[PaperRow, ...] = tuple(_main_tables() + _table4())


@dataclass(frozen=True)
class Deviation:
    """Why a row's printed count is not met at its table's class count, and what is met instead:
    the count at ``num_classes`` (``None``: the table's) lies within ``tolerance_m`` of the print."""

    reason: str
    num_classes: int | None = None
    tolerance_m: float = PARAM_TOLERANCE_M


_ADE_COUNT = ("the paper prints the ADE20K (150-class) count of this model in every table; at this "
              "table's class count the classifier is smaller/larger by 768 x dC")
_CITY_COUNT = ("the paper prints the Cityscapes (19-class) count of this model in every table (65.9M for "
               "HRNetV2-W48 is also the HRNet paper's figure)")
_SWIN_OURS = ("the prototype model has no class-dependent learnable parameters (90.59M); removing the "
              "classifier takes 0.015M (19 classes) to 0.13M (171), yet the paper prints 90.6 - 0.1 in "
              "every table: rounding of its own, no construction gives 90.5 with 90.6 for the baseline")
_T4_TOTAL = ("Table 4's parametric totals are not its own base (27.37M) plus its own classifier column "
             "(proto_params_m, which ours meets); ours is exactly base + D x C x K (+C), tested separately")

PARAM_DEVIATIONS: dict[str, Deviation] = {
    "table2/FCN/ResNet-101": Deviation(_ADE_COUNT, num_classes=150),
    "table2/SegFormer/MiT-B4": Deviation(_ADE_COUNT, num_classes=150),
    "table6/SegFormer/MiT-B5": Deviation(_ADE_COUNT, num_classes=150),
    "table1/HRNet/HRNetV2-W48": Deviation(_CITY_COUNT, num_classes=19),
    "table3/HRNet/HRNetV2-W48": Deviation(_CITY_COUNT, num_classes=19),
    "table1/Swin/Swin-Base": Deviation(_CITY_COUNT, num_classes=19),
    "table3/Swin/Swin-Base": Deviation(_CITY_COUNT, num_classes=19),
    "table1/Ours/Swin-Base": Deviation(_SWIN_OURS, tolerance_m=0.09),
    "table2/Ours/Swin-Base": Deviation(_SWIN_OURS, tolerance_m=0.09),
    "table3/Ours/Swin-Base": Deviation(_SWIN_OURS, tolerance_m=0.09),
    "table4/parametric/MiT-B2/K1/C500": Deviation(_T4_TOTAL, tolerance_m=0.15),
    "table4/parametric/MiT-B2/K1/C700": Deviation(_T4_TOTAL, tolerance_m=0.15),
    "table4/parametric/MiT-B2/K1/C847": Deviation(_T4_TOTAL, tolerance_m=0.15),
    "table4/parametric/MiT-B2/K10/C150": Deviation(_T4_TOTAL, tolerance_m=0.15),
    "table4/parametric/MiT-B2/K10/C500": Deviation(_T4_TOTAL, tolerance_m=0.15),
    "table4/parametric/MiT-B2/K10/C700": Deviation(_T4_TOTAL, tolerance_m=0.15),
    "table4/parametric/MiT-B2/K10/C847": Deviation(_T4_TOTAL, tolerance_m=0.15),
}
