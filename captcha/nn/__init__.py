"""The network: ResNet-18 and its pretrained sources, checkpoints, devices, CPU training kernels."""
