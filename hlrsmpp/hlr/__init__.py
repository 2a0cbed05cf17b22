"""Number intelligence: parse an MSISDN, resolve it as an HLR lookup would (see docs/numbers.md)."""
from .resolver import (ERR_NAMES, MAP_ERRORS, OUTCOMES, PERMANENT, Destination, HlrResult,
                       Resolver)

__all__ = ["Resolver", "Destination", "HlrResult", "ERR_NAMES", "MAP_ERRORS", "PERMANENT",
           "OUTCOMES"]
