"""nn_parity_seg.py - full-size DeepLabV3-ResNet50 (EchoNet's segmentation
network) with random weights and BatchNorm statistics, saved as upstream
saves it, converted, run by the C engine and by torchvision on the same
frames: logits within 1e-3 of max|torch| per frame, masks agreeing on
>= 99.9 % of pixels.  About 10 s; under ASan/UBSan (EN_SANITIZE) 2 frames.
EN_NN_SKIP_FULL=1 skips it (nn_parity_small.py still covers the same code at
reduced width)."""
import sys

import nn_common as nc

if nc.skip_full():
    print("skip: full-size networks disabled (EN_NN_SKIP_FULL set)")
    sys.exit(77)
# under the sanitizers (EN_SANITIZE) the same network on fewer frames
nframes = 2 if nc.sanitized() else 4
nc.main_with([lambda tmp: nc.seg_case(1, nframes, 7, tmp, "deeplabv3_resnet50")])
