"""Accounts: authentication, admission (limits, coverage) and prepaid credit."""
from .policy import (MICRO, Account, AccountBook, Limits, Package, from_micro, to_micro)
from .refusal import HttpError, Refusal

__all__ = ["MICRO", "Account", "AccountBook", "HttpError", "Limits", "Package", "Refusal",
           "from_micro", "to_micro"]
