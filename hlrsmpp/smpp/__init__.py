"""SMPP 3.4, sans-IO: codec, statuses, and the SMSC session state machine."""
from .codec import Command, DecodeError, Pdu, Tag, decode, encode
from .session import BindMode, SmscSession, State
from .status import Status

__all__ = ["BindMode", "Command", "DecodeError", "Pdu", "SmscSession", "State", "Status", "Tag",
           "decode", "encode"]
