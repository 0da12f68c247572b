"""Cross-version regression harness for torch.nn.KLDivLoss / F.kl_div.

Pipeline: cases (YAML) -> inputs (NumPy, seeded) -> runner (torch env) -> reference
(NumPy float64) -> evaluate (verdicts) -> report.
"""

__version__ = "0.1.0"
