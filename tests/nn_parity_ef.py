"""nn_parity_ef.py - full-size R(2+1)D-18 (EchoNet's EF network) with random
weights and BatchNorm statistics and an fc scaled so EFs land in 10..80,
saved as upstream saves it, converted, run by the C engine and by
torchvision on the same 32-frame clip: |C - torch| <= 0.01 EF points.
About 10 s; under ASan/UBSan (EN_SANITIZE) a 16-frame clip.  EN_NN_SKIP_FULL=1
skips it (nn_parity_small.py still covers the same code at reduced width)."""
import sys

import nn_common as nc

if nc.skip_full():
    print("skip: full-size networks disabled (EN_NN_SKIP_FULL set)")
    sys.exit(77)
# under the sanitizers (EN_SANITIZE) the same network on a 16-frame clip
frames = 16 if nc.sanitized() else 32
nc.main_with([lambda tmp: nc.ef_case(1, 1, 11, tmp, "r2plus1d_18", t=frames)])
