"""Programs written for Intel's C-for-Metal (CM) and SYCL ESIMD, ported to cmlang line by line
with the constructs a CM programmer uses (own code; the originals were read for the idea only)."""
