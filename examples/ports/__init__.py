"""CM / ESIMD programs ported line by line to cmlang (see README.md for the constructs each
needed and docs/porting.md for the general table)."""
