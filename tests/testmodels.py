"""Small random-weight models of the real topologies, for the tests of the
pipeline and the daemon (the parity tests build their own in nn_common).

Random weights say nothing about accuracy; they exercise the plumbing.  The
EF head is scaled to answer near 55.6 % (upstream's initial bias), and the
segmentation head can be calibrated on real frames so that a chosen share of
pixels is "LV", making the size curve follow the picture instead of sitting
at 0 or 12544."""
import os

import torch

import nn_common as nc


def build(d, width_div, origin, calib=None, lv_share=None):
    """Writes seg.safetensors and ef.safetensors into d; returns their paths
    as {"seg": ..., "ef": ...}.  calib: normalised frames (N,3,112,112) for
    BatchNorm statistics and the LV share."""
    torch.manual_seed(5)
    if calib is None:
        calib = torch.randn(2, 3, 112, 112)
    seg = nc.deeplab(width_div=width_div)
    nc.randomize_bn(seg, calib[:4], seed=3)
    if lv_share is not None:
        with torch.no_grad():
            logits = seg(calib)["out"]
            seg.classifier[-1].bias -= torch.quantile(logits.flatten(), 1.0 - lv_share)
    ef = nc.r2plus1d(width_div=width_div)
    nc.randomize_bn(ef, torch.randn(1, 3, 8, 112, 112), seed=4)
    with torch.no_grad():
        ef.fc.weight.mul_(0.01)
        ef.fc.bias.fill_(55.6)
    paths = {}
    for name, model, arch in (("seg", seg, "deeplabv3_resnet50"), ("ef", ef, "r2plus1d_18")):
        pt = os.path.join(d, name + ".pt")
        paths[name] = os.path.join(d, name + ".safetensors")
        nc.save_upstream(model, pt)
        nc.convert(pt, paths[name], "--arch", arch, "--origin", origin)
        os.unlink(pt)
    return paths
