"""The paper's own figures (Degerli et al., 2021), transcribed, to print beside ours.

Values are in % as printed in the paper (the 95% intervals are left out: ours are printed with their own).
Keys are ``(arch, encoder, frozen)``; Table VIII's parameter counts and inference times live with the
parameter counting, :data:`cxrmap.models.params.TABLE_VIII`.
"""

from __future__ import annotations

SEGMENTATION_COLUMNS = ("sensitivity", "specificity", "precision", "f1", "f2", "accuracy", "auc")
"""Columns of Table I, in the paper's order."""
DETECTION_COLUMNS = ("sensitivity", "specificity", "precision", "f1", "f2", "accuracy")
"""Columns of Tables III and VI (detection), in the paper's order."""

TABLE_I: dict[tuple[str, str, bool], tuple[float, ...]] = {
    ("unet", "chexnet", True): (81.2, 99.55, 83.78, 82.47, 81.7, 99.03, 99.19),
    ("unet", "chexnet", False): (82.23, 99.56, 84.54, 83.34, 82.66, 99.08, 99.18),
    ("unet", "densenet121", True): (82.29, 99.61, 86.02, 84.11, 83.01, 99.13, 99.35),
    ("unet", "densenet121", False): (84.0, 99.66, 87.77, 85.81, 84.71, 99.22, 99.19),
    ("unet", "inception_v3", True): (80.42, 99.59, 84.94, 82.62, 81.28, 99.05, 99.2),
    ("unet", "inception_v3", False): (82.34, 99.7, 88.87, 85.43, 83.54, 99.21, 98.82),
    ("unet", "resnet50", True): (81.43, 99.62, 86.07, 83.67, 82.31, 99.11, 99.3),
    ("unet", "resnet50", False): (79.9, 99.7, 88.64, 83.89, 81.43, 99.15, 98.98),
    ("unetplusplus", "chexnet", True): (80.29, 99.59, 85.19, 82.64, 81.21, 99.05, 99.01),
    ("unetplusplus", "chexnet", False): (81.45, 99.6, 85.6, 83.47, 82.24, 99.09, 99.01),
    ("unetplusplus", "densenet121", True): (82.38, 99.61, 85.99, 84.14, 83.08, 99.13, 99.19),
    ("unetplusplus", "densenet121", False): (82.36, 99.68, 88.07, 85.08, 83.42, 99.19, 99.3),
    ("unetplusplus", "inception_v3", True): (82.87, 99.57, 84.83, 83.81, 83.24, 99.1, 99.21),
    ("unetplusplus", "inception_v3", False): (83.49, 99.66, 87.6, 85.45, 84.22, 99.2, 99.18),
    ("unetplusplus", "resnet50", True): (82.07, 99.59, 85.41, 83.71, 82.72, 99.1, 99.15),
    ("unetplusplus", "resnet50", False): (82.64, 99.62, 86.52, 84.45, 83.33, 99.14, 99.27),
    ("dla", "chexnet", True): (79.99, 99.61, 85.57, 82.66, 81.04, 99.06, 99.12),
    ("dla", "chexnet", False): (82.84, 99.56, 84.63, 83.71, 83.19, 99.09, 99.17),
    ("dla", "densenet121", True): (82.48, 99.62, 86.4, 84.36, 83.21, 99.14, 99.16),
    ("dla", "densenet121", False): (82.84, 99.56, 84.63, 83.71, 83.19, 99.09, 99.17),
    ("dla", "inception_v3", True): (80.28, 99.63, 86.43, 83.19, 81.41, 99.09, 99.02),
    ("dla", "inception_v3", False): (83.44, 99.68, 88.18, 85.73, 84.34, 99.22, 99.29),
    ("dla", "resnet50", True): (81.26, 99.63, 86.48, 83.78, 82.25, 99.12, 99.08),
    ("dla", "resnet50", False): (82.07, 99.65, 86.99, 84.45, 83.0, 99.15, 99.31),
}
"""Table I: segmentation (%) over the Group-I test folds, :data:`SEGMENTATION_COLUMNS`."""

TABLE_III: dict[tuple[str, str, bool], tuple[float, ...]] = {
    ("unet", "chexnet", True): (97.56, 91.1, 72.07, 82.9, 91.11, 92.33),
    ("unet", "chexnet", False): (97.97, 92.74, 76.04, 85.62, 92.62, 93.73),
    ("unet", "densenet121", True): (98.07, 94.66, 81.2, 88.84, 94.16, 95.31),
    ("unet", "densenet121", False): (98.37, 98.05, 92.25, 95.21, 97.08, 98.12),
    ("unet", "inception_v3", True): (97.93, 90.0, 69.74, 81.47, 90.61, 91.51),
    ("unet", "inception_v3", False): (97.22, 98.37, 93.33, 95.24, 96.42, 98.15),
    ("unet", "resnet50", True): (98.24, 93.88, 79.06, 87.61, 93.69, 94.71),
    ("unet", "resnet50", False): (96.37, 97.82, 91.21, 93.72, 95.3, 97.54),
    ("unetplusplus", "chexnet", True): (97.8, 91.7, 73.49, 83.92, 91.73, 92.86),
    ("unetplusplus", "chexnet", False): (97.49, 93.65, 78.33, 86.87, 92.94, 94.39),
    ("unetplusplus", "densenet121", True): (97.7, 94.81, 81.58, 88.91, 93.98, 95.36),
    ("unetplusplus", "densenet121", False): (96.51, 99.16, 96.44, 96.48, 96.5, 98.66),
    ("unetplusplus", "inception_v3", True): (98.31, 90.54, 70.96, 82.43, 91.27, 92.02),
    ("unetplusplus", "inception_v3", False): (96.92, 98.37, 93.34, 95.1, 96.18, 98.1),
    ("unetplusplus", "resnet50", True): (97.8, 93.39, 77.69, 86.59, 92.98, 94.23),
    ("unetplusplus", "resnet50", False): (96.78, 97.43, 89.87, 93.2, 95.31, 97.31),
    ("dla", "chexnet", True): (97.46, 92.47, 75.27, 84.94, 92.03, 93.42),
    ("dla", "chexnet", False): (97.32, 94.93, 81.87, 88.93, 93.78, 95.39),
    ("dla", "densenet121", True): (97.36, 95.66, 84.08, 90.23, 94.38, 95.99),
    ("dla", "densenet121", False): (97.09, 99.07, 96.08, 96.58, 96.88, 98.69),
    ("dla", "inception_v3", True): (96.92, 93.24, 77.13, 85.9, 92.19, 93.94),
    ("dla", "inception_v3", False): (96.71, 99.13, 96.32, 96.52, 96.63, 98.67),
    ("dla", "resnet50", True): (97.49, 95.3, 82.98, 89.65, 94.2, 95.71),
    ("dla", "resnet50", False): (96.17, 98.15, 92.44, 94.27, 95.4, 97.77),
}
"""Table III: detection (%) averaged over the Group-I test folds, :data:`DETECTION_COLUMNS`."""

TABLE_II: dict[str, tuple[int, int, int, int]] = {
    "covid": (2951, 2361, 10035, 590),
    "I": (12544, 10035, 10035, 2509),
}
"""Table II, per fold: class -> (samples, training, augmented training, test)."""

TABLE_IV: dict[tuple[str, str], tuple[int, int, int, int]] = {
    ("unet", "densenet121"): (12300, 244, 48, 2903),
    ("unetplusplus", "densenet121"): (12439, 105, 103, 2848),
}
"""Table IV: cumulative Group-I confusion matrices (not frozen), ``(tn, fp, fn, tp)``."""

TABLE_V: dict[str, tuple[int, int, int]] = {
    "covid": (2078, 10000, 873),
    "bacterial": (2130, 5000, 630),
    "chestxray14": (86524, 86524, 25596),
    "viral": (1146, 5000, 339),
}
"""Table V: Group-II class -> (training, augmented training, test)."""

GROUP_II_TARGETS = {"covid": 10000, "bacterial": 5000, "viral": 5000}
"""Group-II augmentation targets (Table V); ChestX-ray14 is not augmented."""

TABLE_VI: dict[str, tuple[float, ...]] = {
    "segmentation": (81.72, 99.93, 84.74, 83.20, 82.31, 99.85),
    "detection": (94.96, 99.88, 96.40, 95.67, 95.24, 99.73),
}
"""Table VI: U-Net DenseNet-121 on the Group-II test set (%), :data:`DETECTION_COLUMNS`."""

TABLE_VII: tuple[int, int, int, int] = (26534, 31, 44, 829)
"""Table VII: Group-II confusion matrix of U-Net DenseNet-121, ``(tn, fp, fn, tp)``."""

LEADING = ("unet", "densenet121", False)
"""The leading Group-I model, trained for Group II (Sec. III-B-2): U-Net, DenseNet-121 not frozen."""

FIG6_MODELS = (
    ("unet", "densenet121", False),
    ("unetplusplus", "densenet121", False),
    ("dla", "densenet121", False),
)
"""Fig. 6: the precision-recall curves of the three leading models, all not frozen."""

PAPER_MS_DEVICE = "NVIDIA GeForce RTX 2080 Ti (TensorFlow)"
"""Where Table VIII's inference times were measured (Sec. III-A)."""
