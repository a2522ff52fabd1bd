"""nn_models.py - torchvision's two EchoNet-Dynamic networks as upstream
builds them (DeepLabV3-ResNet50 with a 1-channel head, R(2+1)D-18 with a
1-output fc), full size or reduced in width with the same topology, so the
engine runs either with the same code.  Shared by the parity tests and the
phantom training script."""

import torch
import torchvision


def deeplab(width_div=1):
    m = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, aux_loss=False)
    m.classifier[-1] = torch.nn.Conv2d(256, 1, kernel_size=1)   # as upstream
    return shrink(m, width_div)


def r2plus1d(width_div=1):
    m = torchvision.models.video.r2plus1d_18(weights=None)
    m.fc = torch.nn.Linear(m.fc.in_features, 1)                 # as upstream
    return shrink(m, width_div)


def shrink(model, div):
    """Divides every channel width but the 3 input and 1 output channels by
    div, keeping the topology (strides, dilations, kernels, key names)."""
    if div == 1:
        return model

    def f(c):
        return c if c <= 3 else max(2, c // div)

    for parent in list(model.modules()):
        for name, ch in list(parent.named_children()):
            new = None
            if isinstance(ch, (torch.nn.Conv2d, torch.nn.Conv3d)):
                new = type(ch)(f(ch.in_channels), f(ch.out_channels), ch.kernel_size,
                               stride=ch.stride, padding=ch.padding, dilation=ch.dilation,
                               bias=ch.bias is not None)
            elif isinstance(ch, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                new = type(ch)(f(ch.num_features))
            elif isinstance(ch, torch.nn.Linear):
                new = torch.nn.Linear(f(ch.in_features), ch.out_features)
            if new is not None:
                setattr(parent, name, new)
    return model
