"""Accounts: settings (settings.py), the book of what each used (book.py: credit,
counters, admission, bans, authentication) and why a lookup or a bind is refused."""
from .book import Account, AccountBook, Package, Reservation, Usage
from .refusal import HttpError, Refusal, smpp_status_of
from .settings import MICRO, AccountSettings, Limits, from_micro, to_micro

__all__ = ["MICRO", "Account", "AccountBook", "AccountSettings", "HttpError", "Limits", "Package",
           "Refusal", "Reservation", "Usage", "from_micro", "smpp_status_of", "to_micro"]
