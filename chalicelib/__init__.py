"""netimmune: signed abuse reports routed to whoever runs the address space."""

__version__ = "0.1.0"
