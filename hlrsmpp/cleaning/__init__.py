"""Contact-list cleaning: normalise, deduplicate and (premium) HLR-check a CSV or text list.
Used by ``hlrsmpp clean`` (tools) and by the server's HTTP cleaning jobs; it knows neither."""
from .job import (ABSENT, DELIMITERS, DROPPED_ERRS, NUMBER_REFUSALS, RETRY_STATUSES, STYLES, CleanJob,
                  EngineChecker, IntSet, JobFailed, Layout, Result, detect_layout, peak_rss_mb)

__all__ = ["ABSENT", "DELIMITERS", "DROPPED_ERRS", "NUMBER_REFUSALS", "RETRY_STATUSES", "STYLES", "CleanJob",
           "EngineChecker", "IntSet", "JobFailed", "Layout", "Result", "detect_layout", "peak_rss_mb"]
