"""The one error a user can fix, shared by the operator tools, contact-list cleaning and the
server's HTTP cleaning jobs."""
from __future__ import annotations


class ToolError(Exception):
    """Something the user can fix (a file, an address, a credential): printed as one
    line on stderr, exit status ``code``, never a traceback."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code
