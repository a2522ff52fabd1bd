"""nn_parity_small.py - reduced-width variants (same topology, channels / 4)
of both networks against torchvision, with the full-size tolerances, and the
8-bit entry points (normalisation, batching, LV sizes, EF clip sampling and
padding) at width / 8.  Cheap enough for the sanitizers too."""
import nn_common as nc

nc.main_with([
    lambda tmp: nc.seg_case(4, 5, 101, tmp, "deeplabv3 width/4"),
    lambda tmp: nc.ef_case(4, 2, 202, tmp, "r2plus1d width/4"),
    lambda tmp: nc.frames_api_case(tmp, "8-bit API width/8"),
])
