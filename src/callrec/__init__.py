"""callrec: a call-recording catalogue speaking the GWS Call Recording API."""

__version__ = "0.1.0"
