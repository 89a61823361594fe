"""Use cases and the ports (``typing.Protocol``) they need. Owns no SQL and no HTTP."""
