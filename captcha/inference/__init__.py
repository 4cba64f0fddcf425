"""Solving: decoding, backends, the compiled-model cache, `Solver`, batch solving and the service."""
