"""nn_parity_small.py - reduced-width variants (same topology, channels / 4)
of both networks against torchvision, with the full-size tolerances (segmentation
also at 224x224, where ASPP's branches run apart), and the
8-bit entry points (normalisation, batching, LV sizes, EF clip sampling and
padding) at width / 8.  Cheap enough for the sanitizers too.  The fp32
products run on the engine's own AVX-512 kernel where the CPU has it: the
width/4 cases run again with EN_NN_FP32_KERNEL=0, the OpenBLAS path every
CPU without AVX-512 takes."""
import os

import nn_common as nc


def openblas(case):
    def run(tmp):
        os.environ["EN_NN_FP32_KERNEL"] = "0"
        try:
            return case(tmp)
        finally:
            del os.environ["EN_NN_FP32_KERNEL"]
    return run


nc.main_with([
    lambda tmp: nc.seg_case(4, 5, 101, tmp, "deeplabv3 width/4", aspp_merged=True),
    # 224x224: a 28x28 map, where rate 24 reads more than its middle tap
    lambda tmp: nc.seg_case(4, 2, 105, tmp, "deeplabv3 width/4, 224x224", size=224,
                            aspp_merged=False),
    lambda tmp: nc.ef_case(4, 2, 202, tmp, "r2plus1d width/4"),
    openblas(lambda tmp: nc.seg_case(4, 3, 103, tmp, "deeplabv3 width/4, OpenBLAS")),
    openblas(lambda tmp: nc.ef_case(4, 1, 204, tmp, "r2plus1d width/4, OpenBLAS")),
    lambda tmp: nc.frames_api_case(tmp, "8-bit API width/8"),
])
