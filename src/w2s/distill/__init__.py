"""Keep the gain without the search: search outputs as training data (``w2s distill``)."""

from w2s.distill.data import DistillPlan, run_distill_data, write_datasets
from w2s.distill.rows import PAIRS, Scored, Searched

__all__ = ["PAIRS", "DistillPlan", "Scored", "Searched", "run_distill_data", "write_datasets"]
