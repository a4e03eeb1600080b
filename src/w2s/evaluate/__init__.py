"""The evaluation harness: configs (sweeps of methods), resumable runs, metrics, reports."""

from w2s.evaluate.config import EvalConfig, MethodSpec, load_config
from w2s.evaluate.report import summarize, write_report
from w2s.evaluate.run import run_eval
from w2s.evaluate.store import ResultStore, read_rows

__all__ = ["EvalConfig", "MethodSpec", "ResultStore", "load_config", "read_rows", "run_eval",
           "summarize", "write_report"]
