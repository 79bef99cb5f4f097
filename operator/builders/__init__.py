"""Pure builders: one module per object kind, each returning a manifest dict. No I/O, no clock."""
