"""The pure core: value objects, entities and rules. No I/O, no frameworks, no async."""
