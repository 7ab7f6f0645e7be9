"""TalkRig motion server: audio features, engines (procedural, diffusion), training, evaluation, the ZeroMQ server."""

import os as _os

# A job batched with others must give what it gives alone (the motion server and the encoder packer
# promise it), but the thread count a forward gets depends on the load. On AVX-512 CPUs, MKL's sgemm
# sums a small-M, large-K product (a transformer's second MLP layer over a short window) in another
# order on 2 threads than on 1. Its strict reproducibility mode makes GEMM results independent of the
# thread count (the Blender transcription tests that failed on such a host pass with it too). MKL reads
# this at its first call, so it is set before anything here computes; a value the user set is kept.
# ``python scripts/measure_cpu_forwards.py`` with MKL_CBWR=AUTO against this, on the 2-core AVX-512
# box: no slower.
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"
